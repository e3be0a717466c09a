/**
 * Renders what the node shows: each UI event as one human line, or as one JSON line
 * with `--json` (cli.md "JSON output"). Text shows local time (TZ honoured); JSON keeps
 * ISO 8601 in UTC. The console builds its coloured lines from the same segments.
 */
import type { StatsView } from "../chat/StatsSnapshot.ts"
import type { UiEvent } from "../services/Events.ts"
import type { RecipientResult } from "../chat/Broadcast.ts"
import { ALL, type ConversationEntry, type HistoryEntry } from "../services/History.ts"
import type { PeerView } from "../services/PeerSnapshot.ts"
import { refusalText } from "../domain/Frames.ts"
import { clean, escapeChar, UNSAFE } from "../domain/Text.ts"
import { type Line, plain, type Segment, tone } from "./style.ts"
import { clock, parseTime, sentNote, stamp } from "./time.ts"
import { transferLine, transferOf } from "./transferView.ts"

export { clean }

/**
 * Any value as one line of JSON, for every `--json` print: JSON.stringify, which escapes
 * C0 controls, then the UNSAFE characters it leaves raw (DEL, C1, bidi controls, U+2028/9)
 * escaped as `\uXXXX` too. JSON.parse gives the original strings back.
 */
export const toJson = (value: unknown): string => JSON.stringify(value).replace(UNSAFE, escapeChar)

export type MessageEvent = Extract<UiEvent, { readonly event: "message" }>

/** What marks a broadcast (the `*all*` conversation) beside its sender's or recipient's name. */
const TO_EVERYONE = " (to everyone)"

/** What marks a secure message with a peer whose pinned key the user has not verified (`trust`). */
const UNVERIFIED = " (key not verified)"

/** What follows the sender's name on a message line: how it came, when not secure and verified. */
export const modeMark = (mode: string, verified: boolean | undefined): string =>
  mode === "classic-3des" ? " (classic, not secure)" : mode === "plain" ? " (unencrypted)" : verified === false ? UNVERIFIED : ""

/**
 * The start of a message line, up to the text: `[21:15:26] bob (unencrypted): `, with
 * `, sent 21:02:10` beside the arrival time when the sender's time is more than a minute off.
 */
export const messageHead = (e: MessageEvent): ReadonlyArray<Segment> => {
  const at = parseTime(e.at)
  const note = at === undefined ? undefined : sentNote(at, parseTime(e.sentAt))
  const mark = modeMark(e.mode, e.verified)
  return [
    tone("time", `[${at === undefined ? "??:??:??" : clock(at)}${note === undefined ? "" : `, ${note}`}]`),
    " ",
    tone("name", e.from),
    e.to === ALL ? tone("dim", TO_EVERYONE) : e.group !== undefined ? tone("dim", ` in #${e.group}`) : "",
    mark === "" ? "" : tone(e.mode === "noise" ? "dim" : "warn", mark),
    ": "
  ]
}

/** A peer event's line: `* alice (192.168.1.20) is online`. */
const peerSegments = (e: Extract<UiEvent, { readonly event: "peer" }>): ReadonlyArray<Segment> => {
  const where = ` (${e.address}${e.proto === "classic" ? ", classic" : ""})`
  const what = e.status === "online"
    ? " is online"
    : e.status === "away"
    ? " is away"
    : e.status === "expired"
    ? " has not been heard for a long time and was removed"
    : " left"
  return ["* ", tone("name", e.username), tone("dim", `${where}${what}`)]
}

/** An event as one line of segments; a message's text stays on this one line (its breaks escaped). */
export const eventLine = (e: UiEvent): Line => {
  switch (e.event) {
    case "peer":
      return peerSegments(e)
    case "message":
      return [...messageHead(e), e.text]
    case "delivered":
      return [tone("dim", "  delivered to "), tone("name", e.to)]
    case "warning":
      return [tone("warn", `! ${e.message}`)]
    case "error":
      return [tone("error", `error: ${e.message}`)]
    case "info":
      return e.message
    case "file":
      // a transfer's change of state (its progress is the follower's: progress.ts)
      return transferLine(transferOf(e), "p2pchat ")
  }
}

/** An event as one line of text (discover, respond, and the tests): no colour, every control escaped. */
export const textLine = (e: UiEvent): string => plain(eventLine(e))

export const jsonLine = (e: UiEvent): string => toJson(e)

export const render = (json: boolean) => (e: UiEvent): string => (json ? jsonLine(e) : textLine(e))

/** A history entry; a secure one says whether its peer's pinned key is verified. */
export type ShownEntry = HistoryEntry & { readonly verified?: boolean }

/** History entries as shown: each secure one with `verified` (its peer among the verified names). */
export const withVerified = (entries: ReadonlyArray<HistoryEntry>, verifiedNames: ReadonlySet<string>): ReadonlyArray<ShownEntry> =>
  entries.map((h) => h.mode === "noise" ? { ...h, verified: verifiedNames.has(h.peer) } : h)

/** Where a message of a conversation beyond its peer went: ` (to everyone)`, ` in #team` (`group`: the group's name). */
const beyond = (conversation: string | undefined, group: string | undefined): string =>
  conversation === ALL ? TO_EVERYONE : group !== undefined ? ` in #${clean(group)}` : conversation?.startsWith("#") ? ` in ${clean(conversation)}` : ""

/** One history entry as a line of a conversation, in local time; `group`: the name of its group, if it is a group's. */
export const historyLine = (h: ShownEntry, group?: string): string => {
  const at = parseTime(h.at)
  const when = at === undefined ? h.at : stamp(at)
  const mode = h.mode === "noise" ? (h.verified === false ? UNVERIFIED : "") : h.mode === "plain" ? " [unencrypted]" : " [classic, not secure]"
  const everyone = beyond(h.conversation, group)
  const state = h.state === "refused" ? `refused: ${clean(refusalText(h.refused ?? "?"))}` : h.state
  return h.direction === "sent"
    ? `[${when}] me -> ${clean(h.peer)}${everyone}: ${clean(h.text)} (${state})${mode}`
    : `[${when}] ${clean(h.peer)}${everyone}: ${clean(h.text)}${mode}`
}

type NotedRecipient = { readonly peer: string; readonly state: string; readonly refused?: string | undefined }

/** The refused ones, by code: `refused by bob, dave (they left the group)`. */
const refusedNotes = (recipients: ReadonlyArray<NotedRecipient>): ReadonlyArray<string> => {
  const byCode = new Map<string, Array<string>>()
  for (const r of recipients) {
    if (r.state !== "refused") continue
    const code = r.refused ?? "?"
    byCode.set(code, [...(byCode.get(code) ?? []), clean(r.peer)])
  }
  return [...byCode].map(([code, peers]) => `refused by ${peers.join(", ")} (${clean(refusalText(code))})`)
}

/** The recipients of a broadcast by state: `delivered to bob, carol; pending for dave; refused by eve (they left the group)`. */
export const recipientsNote = (recipients: ReadonlyArray<NotedRecipient>): string =>
  [
    ...([["delivered", "delivered to"], ["sent", "sent to"], ["pending", "pending for"]] as const)
      .map(([state, words]) => [words, recipients.filter((r) => r.state === state).map((r) => clean(r.peer))] as const)
      .filter(([, peers]) => peers.length > 0)
      .map(([words, peers]) => `${words} ${peers.join(", ")}`),
    ...refusedNotes(recipients)
  ].join("; ")

/**
 * A line of a conversation such as `*all*` or a group's: a message sent, once, with its
 * recipients (`[time] me -> *all*: hello (delivered to bob; pending for dave)`), or one
 * received (`[time] carol in #team: yes`). `group`: the group's name, for a group's.
 */
export const conversationLine = (c: ConversationEntry, group?: string): string => {
  if (c.direction === "received") return historyLine(c, group)
  const at = parseTime(c.at)
  const to = group === undefined ? clean(c.conversation) : `#${clean(group)}`
  return `[${at === undefined ? c.at : stamp(at)}] me -> ${to}: ${clean(c.text)} (${recipientsNote(c.recipients)})`
}

/** How one recipient's copy of a broadcast went, as `send --all` and the console's `all` say it. */
export const recipientLine = (r: RecipientResult): string => {
  const why = r.reason === undefined ? "" : `: ${r.reason}`
  switch (r.state) {
    case "delivered":
      return `delivered to ${r.peer}`
    case "sent":
      return `sent to ${r.peer} (classic peers do not confirm delivery)`
    case "pending":
      return `pending for ${r.peer}${why}`
    case "failed":
      return `not sent to ${r.peer}${why}`
    case "skipped":
      return `skipped ${r.peer}${why}`
    case "refused":
      // the receiver acked it without storing it: answered, not sent again
      return `refused by ${r.peer}${why}`
  }
}

/**
 * A history entry as the console shows it: one line, or for a text of several lines its
 * first line (with the state) and each further one marked `  | `, as a message is shown.
 */
export const historyLines = (h: ShownEntry): ReadonlyArray<Line> => {
  const [first = "", ...more] = h.text.split(/\r?\n/)
  return [historyLine({ ...h, text: first }), ...more.map((l): Line => [tone("dim", "  | "), l])]
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
