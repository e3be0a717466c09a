/**
 * Following transfers as they go, for `send-file`, `accept` and the console: a rate over
 * the last seconds, and a printer that shows each change of state as a line, the progress
 * of one under way as a status line redrawn in place (a terminal), or, with `--json`, each
 * change as a TransferEvent line, at most 4 a second per transfer.
 */
import type { Transfer, TransferEvent } from "../domain/Transfer.ts"
import { toJson } from "./render.ts"
import { screen } from "./Screen.ts"
import { type Line, plain } from "./style.ts"
import { ended, progressLine, transferLine } from "./transferView.ts"

/** How far back the rate looks. */
const RATE_WINDOW_MS = 3_000
/** At most this often a transfer's progress is printed (4 a second). */
export const PROGRESS_EVERY_MS = 250

/** Bytes a second over the last seconds, from the byte counts seen; undefined until two are seen. */
export const makeRate = () => {
  const samples: Array<{ readonly at: number; readonly bytes: number }> = []
  return (bytes: number, at: number): number | undefined => {
    if (samples.length > 0 && bytes < samples[samples.length - 1]!.bytes) samples.length = 0
    samples.push({ at, bytes })
    while (samples.length > 2 && at - samples[0]!.at > RATE_WINDOW_MS) samples.shift()
    const first = samples[0]!
    const dt = at - first.at
    return dt < 200 ? undefined : ((bytes - first.bytes) * 1000) / dt
  }
}

export interface Follower {
  /** A transfer as it is now (from the store, or an event): printed when something changed. */
  readonly update: (t: Transfer, rate?: number) => void
  /** A state already said otherwise (an offer made): not printed again. */
  readonly seen: (id: string, state: Transfer["state"]) => void
  /** Every status line removed (the end). */
  readonly close: () => void
}

/**
 * The printer of transfers. `print` shows a line (the screen's printer, or stdout);
 * `prefix`: what the commands in an offer's hint start with (`p2pchat ` on the command line).
 */
export const makeFollower = (json: boolean, print: (line: Line) => void, prefix = ""): Follower => {
  const last = new Map<string, { state: string; bytes: number; printedAt: number }>()
  const rates = new Map<string, ReturnType<typeof makeRate>>()
  const terminal = !json && process.stdout.isTTY === true
  return {
    update: (t, given) => {
      const now = Date.now()
      const rateOf = rates.get(t.id) ?? makeRate()
      rates.set(t.id, rateOf)
      const measured = rateOf(t.bytes, now)
      const rate = given ?? (t.state === "receiving" ? measured : undefined)
      const before = last.get(t.id)
      const changed = before === undefined || before.state !== t.state
      const moved = before !== undefined && before.bytes !== t.bytes
      if (!changed && !(moved && now - before.printedAt >= PROGRESS_EVERY_MS)) return
      last.set(t.id, { state: t.state, bytes: t.bytes, printedAt: now })
      if (json) {
        const e: TransferEvent = rate === undefined ? { event: "file", ...t } : { event: "file", ...t, rate: Math.round(rate) }
        return print(toJson(e))
      }
      // the progress line first, so that a line saying the end does not come with it still drawn
      if (terminal) screen.status(t.id, t.state === "receiving" && !ended(t) ? progressLine(t, rate) : undefined)
      if (changed) print(transferLine(t, prefix))
    },
    seen: (id, state) => void last.set(id, { state, bytes: 0, printedAt: Date.now() }),
    close: () => screen.clearStatus()
  }
}

/** A line as plain text (the command line prints it with its own printer). */
export const lineText = (line: Line): string => plain(line)
