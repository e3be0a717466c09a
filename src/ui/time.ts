/**
 * Times as the user reads them: local time, as the TZ environment variable (or the
 * system) sets it. The JSON output keeps ISO 8601 in UTC; only text is local.
 */

const pad = (n: number, width = 2): string => String(n).padStart(width, "0")

const WEEKDAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"] as const

/** `21:15:26`, local. */
export const clock = (d: Date): string => `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`

/** `2026-12-01`, the local date. */
export const day = (d: Date): string => `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`

/** `2026-12-01 21:15:26`, local. */
export const stamp = (d: Date): string => `${day(d)} ${clock(d)}`

/** The local zone as an offset from UTC: `UTC+09:00`, `UTC-03:30`, `UTC`. */
export const zone = (d: Date): string => {
  const minutes = -d.getTimezoneOffset()
  if (minutes === 0) return "UTC"
  const abs = Math.abs(minutes)
  return `UTC${minutes > 0 ? "+" : "-"}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
}

/** The line the console prints when the day changes: `--- Tuesday 2026-12-01 ---`. */
export const dayLine = (d: Date): string => `--- ${WEEKDAYS[d.getDay()]} ${day(d)} ---`

/** A time from an ISO text; undefined when it is not one (a peer's `sentAt` may be anything). */
export const parseTime = (iso: string | undefined): Date | undefined => {
  if (iso === undefined || iso === "") return undefined
  const ms = Date.parse(iso)
  return Number.isFinite(ms) ? new Date(ms) : undefined
}

/** How far apart a sender's time and the arrival must be for the console to show both. */
export const SENT_SHOWN_AFTER_MS = 60_000

/**
 * What the console adds beside the arrival time when the sender's time differs from it by
 * more than a minute (a message that waited in the sender's outbox, or a wrong clock):
 * `sent 20:58:01`, with the date when it was another day.
 */
export const sentNote = (at: Date, sentAt: Date | undefined): string | undefined => {
  if (sentAt === undefined || Math.abs(at.getTime() - sentAt.getTime()) <= SENT_SHOWN_AFTER_MS) return undefined
  return `sent ${day(sentAt) === day(at) ? clock(sentAt) : stamp(sentAt)}`
}
