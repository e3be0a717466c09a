/**
 * What the console prints, as text or, with `--json`, as one JSON object a line (cli.md
 * "The console"): each result is given in both forms and printed in one. A failure (a
 * usage error, an unknown command, a send that failed) is counted: a console reading a
 * script exits 1 when any failed.
 */
import type { UiEvent } from "../services/Events.ts"
import { eventLine, jsonLine as eventJson, toJson } from "./render.ts"
import { screen } from "./Screen.ts"
import { type Line, tone } from "./style.ts"
import { day, dayLine } from "./time.ts"

export interface Output {
  readonly json: boolean
  /** Lines shown only as text (an echo, a day line): nothing with --json. */
  readonly text: (...lines: ReadonlyArray<Line>) => void
  /** A result: these lines as text, this value as one JSON line. */
  readonly result: (lines: ReadonlyArray<Line>, json: unknown) => void
  /** A sentence: as text; `{"event":"info","message":...}` with --json. */
  readonly info: (message: string) => void
  /** `! message`; `{"event":"warning",...}`. Not a failure. */
  readonly warn: (message: string) => void
  /** `! message`; `{"event":"error",...}`; counted as `count` failures (default one). */
  readonly fail: (message: string, count?: number) => void
  /** `usage: ...`; `{"event":"error","message":"usage: ..."}`; counted as a failure. */
  readonly usage: (usage: string) => void
  /** A node event, as discover and respond print it (with colour on a terminal). */
  readonly event: (e: UiEvent, lines?: ReadonlyArray<Line>) => void
  /** Before a line about `at`: the day line when the local day changed since the last one. */
  readonly dayOf: (at: Date) => void
  /** How many failures were counted. */
  readonly failures: () => number
}

export const makeOutput = (json: boolean, startedAt: Date): Output => {
  let failures = 0
  let lastDay = day(startedAt)
  const print = screen.print
  const jsonLine = (value: unknown) => print(toJson(value))
  return {
    json,
    text: (...lines) => {
      if (!json) print(...lines)
    },
    result: (lines, value) => json ? jsonLine(value) : print(...lines),
    info: (message) => json ? jsonLine({ event: "info", message }) : print(message),
    warn: (message) => json ? jsonLine({ event: "warning", message }) : print([tone("warn", `! ${message}`)]),
    fail: (message, count = 1) => {
      failures += count
      json ? jsonLine({ event: "error", message }) : print([tone("warn", `! ${message}`)])
    },
    usage: (usage) => {
      failures++
      json ? jsonLine({ event: "error", message: `usage: ${usage}` }) : print(`usage: ${usage}`)
    },
    event: (e, lines) => json ? print(eventJson(e)) : print(...(lines ?? [eventLine(e)])),
    dayOf: (at) => {
      if (json || day(at) === lastDay) return
      lastDay = day(at)
      print([tone("dim", dayLine(at))])
    },
    failures: () => failures
  }
}
