/**
 * The logger of a node with a console (`start`, `chat`): log lines go to stderr as ever
 * (`p2pchat [LEVEL] message`), through the console's printer, so that on a terminal they
 * print above the line being typed instead of through it.
 *
 * Each fact once: on a terminal, a log line that says what an event line of the console
 * says (a warning, a secure session opened) is not shown. The node logs such a fact just
 * before it publishes the event, so a log line waits a moment (HOLD_MS) for its event; an
 * event that came first is remembered a while (KEEP_MS). A file or a pipe gets every log
 * line at once.
 */
import * as Logger from "effect/Logger"
import { screen } from "./Screen.ts"

const HOLD_MS = 250
const KEEP_MS = 2_000

/** What a log line and an event line about one fact share: the text without the role and the address:port. */
export const factOf = (message: string): string =>
  message.replace(/^[a-z]+: /, "").replace(/ \(\d{1,3}(?:\.\d{1,3}){3}:\d+\)/g, "")

interface Held {
  readonly fact: string
  readonly line: string
  readonly timer: ReturnType<typeof setTimeout>
}

const held: Array<Held> = []
const shown: Array<{ readonly fact: string; readonly at: number }> = []

const dedupes = (): boolean => screen.prompted() && process.stderr.isTTY === true

/** The console printed an event line saying `message`: the log line saying the same is not shown. */
export const sawEvent = (message: string): void => {
  if (!dedupes()) return
  const fact = factOf(message)
  const i = held.findIndex((h) => h.fact === fact)
  if (i >= 0) {
    clearTimeout(held[i]!.timer)
    held.splice(i, 1)
    return
  }
  const now = Date.now()
  while (shown.length > 0 && now - shown[0]!.at > KEEP_MS) shown.shift()
  shown.push({ fact, at: now })
}

/** Prints the log lines still waiting for their event (the console is ending). */
export const flushLogs = (): void => {
  for (const h of held.splice(0)) {
    clearTimeout(h.timer)
    screen.log(h.line)
  }
}

const log = (line: string, text: string): void => {
  if (!dedupes()) return screen.log(line)
  const fact = factOf(text)
  const now = Date.now()
  const i = shown.findIndex((s) => s.fact === fact && now - s.at <= KEEP_MS)
  if (i >= 0) return void shown.splice(i, 1)
  const h: Held = {
    fact,
    line,
    timer: setTimeout(() => {
      const j = held.indexOf(h)
      if (j >= 0) held.splice(j, 1)
      screen.log(line)
    }, HOLD_MS)
  }
  held.push(h)
}

/** The logger main.ts installs for `start` and `chat` in place of the plain stderr one. */
export const consoleLogger: Logger.Logger<unknown, void> = Logger.make(({ logLevel, message }) => {
  const text = Array.isArray(message) ? message.map(String).join(" ") : String(message)
  log(`p2pchat [${logLevel.toLowerCase()}] ${text}`, text)
})
