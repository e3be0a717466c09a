/**
 * How a file transfer is shown (cli.md "send-file", "files"): the line of each state, the
 * progress line (bytes, percent, rate, time left) that the console and `send-file` redraw in
 * place, and the rows of `files`. The JSON of a transfer is the Transfer itself (and a
 * progress event the TransferEvent): render.ts's `toJson` of it, nothing added.
 */
import type { Transfer, TransferEvent } from "../domain/Transfer.ts"
import { clean } from "../domain/Text.ts"
import { type Line, tone } from "./style.ts"

const UNITS = ["B", "kB", "MB", "GB", "TB"] as const

/** A size in bytes as people read it, in the offer's units: `512 B`, `1.50 kB`, `20.0 MB`, `8.59 GB` (three figures). */
export const formatBytes = (n: number): string => {
  if (!Number.isFinite(n) || n < 0) return "? B"
  let value = n
  let unit = 0
  while (value >= 1000 && unit < UNITS.length - 1) {
    value /= 1000
    unit++
  }
  if (unit === 0) return `${n} B`
  const shown = value >= 100 ? value.toFixed(0) : value >= 10 ? value.toFixed(1) : value.toFixed(2)
  return `${shown} ${UNITS[unit]}`
}

/** A time left in seconds: `4s`, `1m05s`, `2h03m`; `?` when unknown. */
export const formatLeft = (seconds: number | undefined): string => {
  if (seconds === undefined || !Number.isFinite(seconds) || seconds < 0) return "?"
  const s = Math.ceil(seconds)
  if (s < 60) return `${s}s`
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`
}

/** The first characters of an id, enough to name it in `accept` and `decline` (a unique prefix works). */
export const shortId = (id: string): string => clean(id.slice(0, 8))

/** `report.pdf (1.50 MiB)`, `photos/ (1,000 files, 200 MiB)`. */
export const whatOf = (t: Pick<Transfer, "name" | "size" | "count">): string =>
  t.count === 1 && !t.name.endsWith("/")
    ? `${clean(t.name)} (${formatBytes(t.size)})`
    : `${clean(t.name)}/ (${t.count.toLocaleString("en")} file${t.count === 1 ? "" : "s"}, ${formatBytes(t.size)})`

const percentOf = (t: Pick<Transfer, "bytes" | "size">): number =>
  t.size <= 0 ? 100 : Math.min(100, Math.floor((t.bytes / t.size) * 100))

/**
 * The progress line of a transfer under way: `bob <- report.pdf  45.0 MiB of 100 MiB (45%),
 * 12.3 MiB/s, 4s left` (`->` for one going out). `rate`: bytes a second, when known.
 */
export const progressLine = (t: Transfer, rate: number | undefined): string => {
  const arrow = t.direction === "in" ? `${clean(t.peer)} -> me` : `me -> ${clean(t.peer)}`
  const speed = rate === undefined ? "" : `, ${formatBytes(Math.round(rate))}/s`
  const left = rate === undefined || rate <= 0 ? "" : `, ${formatLeft((t.size - t.bytes) / rate)} left`
  return `${arrow} ${clean(t.name)}: ${formatBytes(t.bytes)} of ${formatBytes(t.size)} (${percentOf(t)}%)${speed}${left}`
}

/** How to take or refuse an offer: the words to type. */
export const offerHint = (t: Pick<Transfer, "id">, prefix = ""): string =>
  `${prefix}accept ${shortId(t.id)} or ${prefix}decline ${shortId(t.id)}`

/**
 * A transfer's line for a change of state (an offer, the end, a pause), as the console,
 * `start` and `send-file` print it; the progress of one under way is `progressLine`.
 * `prefix`: what the hint's commands start with (`p2pchat ` on the command line).
 */
export const transferLine = (t: Transfer, prefix = ""): Line => {
  const peer = tone("name", t.peer)
  const what = whatOf(t)
  const why = t.reason === undefined ? "" : `: ${clean(t.reason)}`
  const inbound = t.direction === "in"
  switch (t.state) {
    case "offered":
      return inbound
        ? ["* ", peer, ` offers ${what}, SHA-256 ${clean(t.sha256)}; `, tone("dim", offerHint(t, prefix))]
        : ["* offered ", `${what} to `, peer, tone("dim", ` [${shortId(t.id)}]`)]
    case "receiving":
      return inbound ? ["* receiving ", `${what} from `, peer] : ["* ", peer, ` is fetching ${what}`]
    case "paused":
      return [tone("warn", `! ${inbound ? "receiving" : "sending"} ${what} ${inbound ? "from" : "to"} `), peer, tone("warn", ` paused${why}`)]
    case "done":
      return inbound
        ? ["* received ", `${what} from `, peer, `, SHA-256 verified: ${clean(t.path ?? "")}`]
        : ["* ", peer, ` has ${what}`]
    case "failed":
      return [tone("error", `! ${inbound ? "receiving" : "sending"} ${what} ${inbound ? "from" : "to"} `), peer, tone("error", ` failed${why}`)]
    case "declined":
      return inbound ? ["* declined ", `${what} from `, peer] : ["* ", peer, ` declined ${what}`]
  }
}

/** Whether a transfer has ended: nothing more will change it. */
export const ended = (t: Pick<Transfer, "state">): boolean => t.state === "done" || t.state === "failed" || t.state === "declined"

/** One transfer as a row of `files`: id, direction, peer, state, progress, name and size, where it is saved. */
export const fileRow = (t: Transfer): string => {
  const progress = t.state === "receiving" || t.state === "paused" ? ` ${percentOf(t)}%` : ""
  const where = t.path === undefined ? "" : `  ${clean(t.path)}`
  const why = t.reason === undefined || t.state === "done" ? "" : `  (${clean(t.reason)})`
  return `${shortId(t.id)}  ${t.direction === "in" ? "in " : "out"}  ${clean(t.peer).padEnd(16)} ${`${t.state}${progress}`.padEnd(14)} ` +
    `${whatOf(t)}${where}${why}`
}

/** A progress event without its `event` and `rate`: the Transfer it carries. */
export const transferOf = (e: TransferEvent): Transfer => {
  const { event: _event, rate: _rate, ...t } = e
  return t
}
