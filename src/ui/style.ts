/**
 * Colour on the terminal, and the one place where a line becomes terminal text.
 *
 * A line is plain text or a list of segments, each with a tone. `paint` cleans every
 * segment (`clean`: a peer's text never reaches the terminal raw) and, only when colour is
 * on, wraps it in the tone's SGR codes: the escapes come from here, never from a peer.
 * Colour is on only on a terminal, without NO_COLOR (https://no-color.org), and not on a
 * `dumb` one.
 */
import { stripVTControlCharacters } from "node:util"
import { clean } from "../domain/Text.ts"

/**
 * `name`: a peer's name, one colour per name; `self`: the user's own lines; `time`, `dim`:
 * times, day lines and hints; `warn`, `error`: what went wrong or is not secure.
 */
export type Tone = "plain" | "name" | "self" | "time" | "dim" | "warn" | "error"

export type Segment = string | { readonly tone: Tone; readonly text: string }

/** What a printer prints as one terminal line. */
export type Line = string | ReadonlyArray<Segment>

export const tone = (t: Tone, text: string): Segment => ({ tone: t, text })

/** Whether to colour what goes to `stream`, in environment `env`. */
export const colourWanted = (stream: { readonly isTTY?: boolean | undefined }, env: NodeJS.ProcessEnv = process.env): boolean =>
  stream.isTTY === true && (env["NO_COLOR"] ?? "") === "" && env["TERM"] !== "dumb"

/** Name colours: green, blue, magenta, cyan, and their bright forms (red and yellow mean trouble). */
const NAME_COLOURS = [32, 34, 35, 36, 92, 94, 95, 96] as const

/** The same name (in any case) always gets the same colour. */
export const nameColour = (name: string): number => {
  let h = 0
  for (const c of name.toLowerCase()) h = (h * 31 + c.codePointAt(0)!) >>> 0
  return NAME_COLOURS[h % NAME_COLOURS.length]!
}

const SGR: Record<Exclude<Tone, "plain" | "name">, string> = {
  self: "1",
  time: "2",
  dim: "2",
  warn: "33",
  error: "1;31"
}

const codeOf = (s: { readonly tone: Tone; readonly text: string }): string | undefined =>
  s.tone === "plain" ? undefined : s.tone === "name" ? String(nameColour(s.text)) : SGR[s.tone]

/** A line as terminal text: each segment cleaned, and coloured when `colour` is on. */
export const paint = (line: Line, colour: boolean): string => {
  if (typeof line === "string") return clean(line)
  return line.map((s) => {
    if (typeof s === "string") return clean(s)
    const code = colour ? codeOf(s) : undefined
    return code === undefined || s.text === "" ? clean(s.text) : `\x1b[${code}m${clean(s.text)}\x1b[0m`
  }).join("")
}

/** The line's text without colour (what a test or a log compares). */
export const plain = (line: Line): string => paint(line, false)

/** Terminal columns a text takes: wide (CJK, emoji) characters two, combining marks none. */
export const columns = (text: string): number => {
  let n = 0
  for (const c of stripVTControlCharacters(text)) {
    if (/[\p{Mn}\p{Me}\u200b-\u200f]/u.test(c)) continue
    n += /[\u1100-\u115f\u2e80-\u303e\u3041-\u33ff\u3400-\u4dbf\u4e00-\u9fff\ua000-\ua4cf\uac00-\ud7a3\uf900-\ufaff\ufe30-\ufe4f\uff00-\uff60\uffe0-\uffe6\u{1f300}-\u{1f64f}\u{1f900}-\u{1f9ff}\u{20000}-\u{3fffd}]/u
        .test(c)
      ? 2
      : 1
  }
  return n
}
