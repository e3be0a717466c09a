/**
 * What the page knows: the peers, their keys, the groups, the conversations with their
 * messages and unread counts, and the transfers; changed by the node's answers and by the
 * events of the live stream. Plain data: the view (view.tsx) renders it, every string of a
 * peer as text.
 */
import type { Group, HistoryLine, Key, Me, NodeEvent, Peer, Recipient, SendResult, Transfer } from "./api.ts"

export const ALL = "*all*"

/** One message as the page shows it. */
export interface Msg {
  /** The message id; a local one (`local-N`) until the node says which. */
  id: string
  readonly direction: "sent" | "received"
  /** The sender (received) or the peer it went to (sent, one-to-one). */
  readonly peer: string
  readonly text: string
  readonly at: string
  readonly sentAt?: string
  readonly mode: string
  readonly verified?: boolean
  /** sending (not answered yet), pending, delivered, sent (classic), failed, received. */
  state: string
  /** A broadcast's or a group's copies, one per recipient. */
  recipients?: Array<{ -readonly [K in keyof Recipient]: Recipient[K] }>
  reason?: string
}

/** A conversation: a peer (its name lower-cased), `*all*`, or a group (`#` and its id). */
export interface Conversation {
  readonly key: string
  readonly label: string
  readonly kind: "peer" | "all" | "group"
}

export interface State {
  me: Me | undefined
  peers: Map<string, Peer>
  keys: Map<string, Key>
  groups: Array<Group>
  /** People who wrote or were written to, though not heard now: by key, their name. */
  known: Map<string, string>
  current: string | undefined
  messages: Map<string, Array<Msg>>
  unread: Map<string, number>
  /** Deliveries heard before the send's answer gave the id: by id, the names. */
  early: Map<string, Set<string>>
  transfers: Map<string, Transfer>
  /** Whether the node transfers files (it answers /api/files). */
  files: boolean
  away: boolean
  connected: boolean
  notice: string | undefined
}

export const initial = (): State => ({
  me: undefined,
  peers: new Map(),
  keys: new Map(),
  groups: [],
  known: new Map(),
  current: undefined,
  messages: new Map(),
  unread: new Map(),
  early: new Map(),
  transfers: new Map(),
  files: false,
  away: false,
  connected: false,
  notice: undefined
})

export const keyOf = (name: string): string => name.normalize("NFC").toLowerCase()

/** The conversations in the list: everyone, the groups, then the peers and people known, by name. */
export const conversations = (s: State): Array<Conversation> => {
  const people = new Map<string, string>(s.known)
  for (const p of s.peers.values()) people.set(keyOf(p.username), p.username)
  return [
    { key: ALL, label: "Everyone", kind: "all" },
    ...s.groups.filter((g) => !g.left).map((g): Conversation => ({ key: `#${g.id}`, label: `#${g.name}`, kind: "group" })),
    ...[...people].sort((a, b) => a[1].localeCompare(b[1])).map(([key, label]): Conversation => ({ key, label, kind: "peer" }))
  ]
}

/** How far a peer's key can be trusted: verified, unverified, changed (announced key not the pinned one), none. */
export type KeyMark = "verified" | "unverified" | "changed" | "none"

export const keyMark = (s: State, name: string): KeyMark => {
  const key = s.keys.get(keyOf(name))
  const announced = s.peers.get(keyOf(name))?.fingerprint ?? null
  if (key === undefined) return announced === null ? "none" : "unverified"
  if (announced !== null && announced !== key.fingerprint) return "changed"
  return key.verified ? "verified" : "unverified"
}

/** A line of `history --json` as a message of conversation `conv`. */
export const fromHistory = (h: HistoryLine): Msg => ({
  id: h.id,
  direction: h.direction,
  peer: h.peer ?? "",
  text: h.text,
  at: h.at,
  mode: h.mode ?? "noise",
  ...(h.verified === undefined ? {} : { verified: h.verified }),
  state: h.state ?? (h.recipients === undefined ? "received" : "pending"),
  ...(h.recipients === undefined ? {} : { recipients: h.recipients.map((r) => ({ ...r })) })
})

/** Where a message event belongs: a broadcast in `*all*`, a group's in `#id`, else its sender's. */
export const conversationOf = (e: Extract<NodeEvent, { event: "message" }>): string =>
  e.to === ALL ? ALL : e.to?.startsWith("#") === true ? e.to : keyOf(e.from)

const push = (s: State, conv: string, m: Msg) => {
  const list = s.messages.get(conv)
  if (list === undefined) return // loaded with the conversation when it is opened
  if (!list.some((x) => x.id === m.id && x.direction === m.direction)) list.push(m)
}

/** Marks a sent message delivered to `to` (one-to-one: its state; else that recipient's copy). */
const deliver = (s: State, id: string, to: string): boolean => {
  let found = false
  for (const list of s.messages.values()) {
    for (const m of list) {
      if (m.id !== id || m.direction !== "sent") continue
      found = true
      if (m.recipients === undefined) m.state = "delivered"
      else for (const r of m.recipients) if (keyOf(r.peer) === keyOf(to)) r.state = "delivered"
    }
  }
  return found
}

/** An event of the live stream; returns the message to notify about, if it is one. */
export const apply = (s: State, e: NodeEvent): Extract<NodeEvent, { event: "message" }> | undefined => {
  switch (e.event) {
    case "peer": {
      const k = keyOf(e.username)
      if (e.status === "expired" || e.status === "left") {
        s.peers.delete(k)
        s.known.set(k, e.username)
      } else {
        const { event: _, ...peer } = e
        s.peers.set(k, { ...peer, status: e.status })
      }
      return undefined
    }
    case "message": {
      const conv = conversationOf(e)
      if (conv !== ALL && !conv.startsWith("#")) s.known.set(conv, e.from)
      push(s, conv, {
        id: e.id,
        direction: "received",
        peer: e.from,
        text: e.text,
        at: e.at,
        ...(e.sentAt === undefined ? {} : { sentAt: e.sentAt }),
        mode: e.mode,
        ...(e.verified === undefined ? {} : { verified: e.verified }),
        state: "received"
      })
      if (s.current !== conv || document.hidden) s.unread.set(conv, (s.unread.get(conv) ?? 0) + 1)
      return e
    }
    case "delivered":
      if (!deliver(s, e.id, e.to)) s.early.set(e.id, (s.early.get(e.id) ?? new Set()).add(e.to))
      return undefined
    case "file":
      s.transfers.set(e.id, e)
      return undefined
    case "warning":
    case "error":
      s.notice = e.message
      return undefined
    default:
      return undefined
  }
}

/** A message typed here, shown at once as `sending` until the node answers. */
export const sending = (s: State, conv: string, text: string, localId: string): Msg => {
  const m: Msg = { id: localId, direction: "sent", peer: conv, text, at: new Date().toISOString(), mode: "noise", state: "sending" }
  s.messages.get(conv)?.push(m)
  return m
}

/** The node's answer to a send: the id, the state, the recipients; deliveries heard before it applied. */
export const sent = (s: State, m: Msg, result: SendResult) => {
  m.id = result.id
  if (result.recipients !== undefined) {
    m.recipients = result.recipients.map((r) => ({ ...r }))
    m.state = "sent"
  } else m.state = result.state ?? "pending"
  for (const to of s.early.get(result.id) ?? []) deliver(s, result.id, to)
  s.early.delete(result.id)
}

/** Opens a conversation: its unread count goes. */
export const open = (s: State, conv: string) => {
  s.current = conv
  s.unread.delete(conv)
}

/** Total unread messages, for the title. */
export const unreadTotal = (s: State): number => [...s.unread.values()].reduce((a, b) => a + b, 0)
