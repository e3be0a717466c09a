/**
 * What the user sees of a transfer: its row as a Transfer, and the progress of a running one
 * as events at most 4 a second (every change of state at once), with the rate over the
 * last seconds; its row's bytes stored at most once a second.
 */
import * as Clock from "effect/Clock"
import * as Effect from "effect/Effect"
import type { TransferEvent } from "../domain/Transfer.ts"
import type { Events } from "../services/Events.ts"
import type { TransferRow, TransferStore } from "../services/TransferStore.ts"
import { rowToTransfer } from "./Transfers.ts"

export const EVENT_EVERY_MS = 250
export const SAVE_EVERY_MS = 1000
/** The rate is measured over a window this long (at least). */
const RATE_WINDOW_MS = 2000

export const toTransfer = rowToTransfer

interface Tick {
  lastEvent: number
  lastSave: number
  windowAt: number
  windowBytes: number
  rate: number | undefined
}

export const makeProgress = (events: Events["Service"], store: TransferStore) => {
  const ticks = new Map<number, Tick>()

  const publish = (row: TransferRow, rate?: number) => {
    const event: TransferEvent = { event: "file", ...toTransfer(row), ...(rate === undefined ? {} : { rate }) }
    return events.publish(event)
  }

  /** A change of state: shown at once (and the progress timers start over). */
  const changed = (row: TransferRow) =>
    Effect.andThen(Effect.sync(() => void ticks.delete(row.seq)), publish(row))

  /** `bytes` done of a running transfer: shown and stored when their time has come. */
  const progress = (row: TransferRow, bytes: number) =>
    Effect.gen(function*() {
      const now = yield* Clock.currentTimeMillis
      let t = ticks.get(row.seq)
      if (t === undefined) ticks.set(row.seq, t = { lastEvent: 0, lastSave: now, windowAt: now, windowBytes: bytes, rate: undefined })
      if (now - t.windowAt >= RATE_WINDOW_MS) {
        t.rate = Math.round(((bytes - t.windowBytes) * 1000) / (now - t.windowAt))
        t.windowAt = now
        t.windowBytes = bytes
      }
      const current = { ...row, bytes, state: "receiving" as const }
      if (now - t.lastEvent >= EVENT_EVERY_MS) {
        t.lastEvent = now
        yield* publish(current, t.rate)
      }
      if (now - t.lastSave >= SAVE_EVERY_MS) {
        t.lastSave = now
        yield* store.setState(row.seq, "receiving", { bytes, path: row.path, reason: null }, new Date(now)).pipe(Effect.ignore)
      }
    })

  return { publish, changed, progress, forget: (seq: number) => Effect.sync(() => void ticks.delete(seq)) }
}
