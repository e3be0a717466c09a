/**
 * The one printer of the process: every line p2pchat shows while the console runs goes
 * through here (the console's own lines, the events, and the log lines of the console's
 * logger), so that none breaks the line being typed. With a line editor attached, a line
 * is printed above the prompt: the prompt and what is typed are cleared, the line written,
 * and the prompt redrawn with what was typed, the cursor where it was.
 *
 * Everything printed is cleaned (`paint`), coloured only when colour is on.
 */
import { type Line, paint } from "./style.ts"

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

const around = (print: () => void): void => {
  if (prompt === undefined) return print()
  prompt.hide()
  print()
  prompt.show()
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
  /** The terminal's bell (a message outside the current conversation). */
  bell: (): void => {
    if (process.stdout.isTTY === true) process.stdout.write("\x07")
  }
}
