/**
 * Renders what the node shows: each UI event as one human line, or as one JSON line
 * with `--json` (CLI.md "JSON shapes").
 */
import type { StatsView } from "../chat/StatsSnapshot.ts"
import type { UiEvent } from "../services/Events.ts"
import type { HistoryEntry } from "../services/History.ts"
import type { PeerView } from "../services/PeerSnapshot.ts"
import { clean, escapeChar, UNSAFE } from "../domain/Text.ts"

export { clean }

/**
 * Any value as one line of JSON, for every `--json` print: JSON.stringify, which escapes
 * C0 controls, then the UNSAFE characters it leaves raw (DEL, C1, bidi controls, U+2028/9)
 * escaped as `\uXXXX` too. JSON.parse gives the original strings back.
 */
export const toJson = (value: unknown): string => JSON.stringify(value).replace(UNSAFE, escapeChar)

export const textLine = (e: UiEvent): string => {
  switch (e.event) {
    case "peer": {
      const who = `${clean(e.username)} (${e.address}${e.proto === "classic" ? ", classic" : ""})`
      switch (e.status) {
        case "online":
          return `* ${who} is online`
        case "away":
          return `* ${who} is away`
        case "expired":
          return `* ${who} has not been heard for a long time and was removed`
        case "left":
          return `* ${who} left`
      }
      break
    }
    case "message":
      return `[${e.at.slice(11, 19)}] ${clean(e.from)}${
        e.mode === "classic-3des"
          ? " (classic, not secure)"
          : e.mode === "plain"
          ? " (unencrypted)"
          : e.verified === false
          ? UNVERIFIED
          : ""
      }: ${clean(e.text)}`
    case "delivered":
      return `  delivered to ${clean(e.to)}`
    case "warning":
      return `! ${clean(e.message)}`
    case "error":
      return `error: ${clean(e.message)}`
    case "info":
      return clean(e.message)
  }
}

export const jsonLine = (e: UiEvent): string => toJson(e)

export const render = (json: boolean) => (e: UiEvent): string => (json ? jsonLine(e) : textLine(e))

/** What marks a secure message with a peer whose pinned key the user has not verified (`trust`). */
const UNVERIFIED = " (key not verified)"

/** A history entry; a secure one says whether its peer's pinned key is verified. */
export type ShownEntry = HistoryEntry & { readonly verified?: boolean }

/** History entries as shown: each secure one with `verified` (its peer among the verified names). */
export const withVerified = (entries: ReadonlyArray<HistoryEntry>, verifiedNames: ReadonlySet<string>): ReadonlyArray<ShownEntry> =>
  entries.map((h) => h.mode === "noise" ? { ...h, verified: verifiedNames.has(h.peer) } : h)

/** One history entry as a line of a conversation. */
export const historyLine = (h: ShownEntry): string => {
  const when = h.at.replace("T", " ").slice(0, 19)
  const mode = h.mode === "noise" ? (h.verified === false ? UNVERIFIED : "") : h.mode === "plain" ? " [unencrypted]" : " [classic, not secure]"
  return h.direction === "sent"
    ? `[${when}] me -> ${clean(h.peer)}: ${clean(h.text)} (${h.state})${mode}`
    : `[${when}] ${clean(h.peer)}: ${clean(h.text)}${mode}`
}

/** One peer as a line of `users` / `peers`. */
export const peerLine = (p: PeerView): string =>
  `${clean(p.username).padEnd(20)} ${p.status.padEnd(7)} ${`${p.address}:${p.port}`.padEnd(22)} ${p.proto}` +
  (p.conflict !== undefined ? "  (name conflict!)" : "")

/** A count and its breakdown: `3 (NotJson 2, BadFrame 1)`, or `0`. */
const withBreakdown = (total: number, parts: Readonly<Record<string, number>>): string => {
  const shown = Object.entries(parts).filter(([, n]) => n > 0).map(([k, n]) => `${clean(k)} ${n}`)
  return shown.length === 0 ? String(total) : `${total} (${shown.join(", ")})`
}

/** `p2pchat stats` as a short table, one group of counters a line. */
export const statsLines = (s: StatsView): ReadonlyArray<string> => {
  const when = `${s.updatedAt.replace("T", " ").slice(0, 19)} UTC`
  const l = s.limits
  return [
    s.running ? `running (pid ${s.pid}); numbers from ${when}` : `not running; last numbers from ${when} (pid ${s.pid})`,
    `connections  accepted ${s.accepted}, open ${s.active}, peak ${s.peakActive}`,
    `sessions     secure in ${s.sessionsIn}, secure out ${s.sessionsOut}`,
    `messages     received ${s.received}, duplicates ${s.duplicates}, delivered ${s.delivered}, ` +
    `sent to classic peers ${s.sent}`,
    `failures     send ${s.sendFailures}, storage ${s.storageFailures}`,
    `pending      ${s.pending}`,
    `rejections   ${withBreakdown(s.rejected, s.rejectedByReason)}`,
    `limits       refused at cap ${l.refusedAtCap}, evicted at cap ${l.evictedAtCap}, ` +
    `first-frame timeout ${l.firstFrameTimeout}, idle timeout ${l.idleTimeout}, frame too large ${l.frameTooLarge}, ` +
    `refused per address ${l.refusedPerAddress}`
  ]
}
