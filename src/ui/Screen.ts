/**
 * The one printer of the process: every line p2pchat shows while the console runs goes
 * through here (the console's own lines, the events, and the log lines of the console's
 * logger), so that none breaks the line being typed. With a line editor attached, a line
 * is printed above the prompt: the prompt and what is typed are cleared, the line written,
 * and the prompt redrawn with what was typed, the cursor where it was.
 *
 * Everything printed is cleaned (`paint`), coloured only when colour is on.
 */
import * as readline from "node:readline"
import { columns, type Line, paint } from "./style.ts"

/** What the screen needs of the line editor that shows the prompt. */
export interface Prompt {
  /** Moves the cursor to where the prompt starts, and clears from there down. */
  readonly hide: () => void
  /** Draws the prompt and the line being typed again, below what was printed. */
  readonly show: () => void
}

interface Out {
  readonly write: (text: string) => unknown
  readonly isTTY?: boolean | undefined
}

let prompt: Prompt | undefined
let colour = false

/**
 * Status lines (a transfer's progress): drawn below what was printed and above the prompt,
 * one terminal row each, redrawn in place; on a terminal only.
 */
const statuses = new Map<string, Line>()
/** Status rows on the screen now. */
let drawn = 0

/** A text cut to fit in one row of `width` columns (wide characters count two). */
export const fitRow = (text: string, width: number): string => {
  let out = ""
  let used = 0
  for (const c of text) {
    const w = columns(c)
    if (used + w > width) return `${out.slice(0, Math.max(0, out.length - 1))}~`
    out += c
    used += w
  }
  return out
}

/** Clears the status rows; with a prompt, it has been hidden first (the cursor is just below them). */
const eraseStatus = (): void => {
  if (drawn === 0) return
  const out = process.stdout
  readline.cursorTo(out, 0)
  readline.moveCursor(out, 0, prompt === undefined ? -(drawn - 1) : -drawn)
  readline.clearScreenDown(out)
  drawn = 0
}

/** Draws the status rows; without a prompt the cursor stays at the end of the last one. */
const drawStatus = (): void => {
  const out = process.stdout
  if (statuses.size === 0 || out.isTTY !== true) return
  // (a terminal that gives no size says 0)
  const width = Math.max(10, (out.columns || 80) - 1)
  const rows = [...statuses.values()].map((l) => fitRow(paint(l, false), width))
  out.write(prompt === undefined ? rows.join("\n") : rows.map((r) => `${r}\n`).join(""))
  drawn = rows.length
}

const around = (print: () => void): void => {
  if (prompt === undefined && drawn === 0 && statuses.size === 0) return print()
  prompt?.hide()
  eraseStatus()
  print()
  drawStatus()
  prompt?.show()
}

export const screen = {
  /** The line editor whose prompt the printed lines go above; undefined when it is gone. */
  attach: (p: Prompt | undefined): void => {
    prompt = p
  },
  setColour: (on: boolean): void => {
    colour = on
  },
  colour: (): boolean => colour,
  /** Whether a prompt is on the screen (an interactive console runs). */
  prompted: (): boolean => prompt !== undefined,
  /** Lines on stdout, above the prompt. */
  print: (...lines: ReadonlyArray<Line>): void => {
    if (lines.length === 0) return
    const text = lines.map((l) => `${paint(l, colour)}\n`).join("")
    around(() => void process.stdout.write(text))
  },
  /**
   * A log line (cleaned, uncoloured) on stderr: above the prompt when stderr is the
   * terminal too; written as it is otherwise (a file or a pipe is not the screen).
   */
  log: (line: string, stream: Out = process.stderr): void => {
    const text = `${paint(line, false)}\n`
    if (stream.isTTY === true) around(() => void stream.write(text))
    else stream.write(text)
  },
  /**
   * Sets (or with `undefined` removes) the status line `key`, redrawn in place below the
   * printed lines (a transfer's progress); nothing is shown when stdout is no terminal.
   */
  status: (key: string, line: Line | undefined): void => {
    if (line === undefined && !statuses.has(key)) return
    if (line === undefined) statuses.delete(key)
    else statuses.set(key, line)
    if (process.stdout.isTTY === true) around(() => {})
  },
  /** Removes every status line. */
  clearStatus: (): void => {
    if (statuses.size === 0) return
    statuses.clear()
    if (process.stdout.isTTY === true) around(() => {})
  },
  /** The terminal's bell (a message outside the current conversation). */
  bell: (): void => {
    if (process.stdout.isTTY === true) process.stdout.write("\x07")
  }
}
