/**
 * What the console's commands work with: the node's services, the console's state (the
 * current conversation, unread messages, the names it knows), its input, its output and
 * the sends it started.
 */
import type * as Option from "effect/Option"
import type { Groups } from "../chat/Groups.ts"
import type { Initiator } from "../chat/Initiator.ts"
import type { Mode } from "../domain/Mode.ts"
import { usernameKey } from "../domain/Presence.ts"
import type { Announcer } from "../services/Announcer.ts"
import type { Config } from "../services/Config.ts"
import type { Crypto } from "../services/Crypto.ts"
import type { History } from "../services/History.ts"
import type { PeerRegistry } from "../services/PeerRegistry.ts"
import type { Transfers } from "../transfer/Transfers.ts"
import type { Trust } from "../trust/Trust.ts"
import type { Editor } from "./LineEditor.ts"
import type { Output } from "./Output.ts"
import type { Follower } from "./progress.ts"
import type { Sends } from "./Sends.ts"
import { type Segment, tone } from "./style.ts"

export interface Services {
  readonly config: Config["Service"]
  readonly registry: PeerRegistry["Service"]
  readonly history: History["Service"]
  readonly initiator: Initiator["Service"]
  readonly trust: Trust["Service"]
  readonly groups: Groups["Service"]
  readonly identity: Crypto["Service"]["identity"]
  readonly announcer: Option.Option<Announcer["Service"]>
  /** File transfer: the whole node's (`start`); none in `chat` alone. */
  readonly transfers: Option.Option<Transfers["Service"]>
}

/** The current conversation: where plain lines go (a peer, or a group). */
export interface Conversation {
  /** The peer's name as it announces it; a group's: `#` and its name. */
  readonly name: string
  /** The peer's key (its name lower-cased); a group's: `#` and its id. */
  readonly key: string
  /** A group's id, when the conversation is a group's (`chat #NAME`). */
  readonly group?: string
  /** The mode asked for; undefined: the peer's default (secure for a p2pchat peer with a key). */
  readonly mode: Mode | undefined
  /** Whether a line has been typed in it yet (the original's `secure`/`unsecure` answer comes first). */
  readonly answered: boolean
}

export interface State {
  current: Conversation | undefined
  /** Messages received outside the current conversation, by peer key, since it was last current. */
  readonly unread: Map<string, { readonly name: string; readonly count: number }>
  /** Names the console knows, by key: peers heard and people who wrote (for completion and parsing). */
  readonly names: Map<string, string>
  /** The groups the console knows (`#` names for completion and parsing), by name lower-cased and by id: the name. */
  readonly groups: Map<string, string>
  /** Warnings shown in the current conversation: said once there, not again with each message. */
  readonly warned: Set<string>
}

export interface Ctx extends Services {
  readonly state: State
  readonly editor: Editor
  readonly out: Output
  readonly sends: Sends
  /** The transfers' lines and progress lines. */
  readonly follower: Follower
}

export const makeState = (): State => ({ current: undefined, unread: new Map(), names: new Map(), groups: new Map(), warned: new Set() })

/** Whether the console knows `name`: a peer's name, or `#` and a group's name or id. */
export const isKnown = (state: State, name: string): boolean =>
  name.startsWith("#") ? state.groups.has(name.slice(1)) || state.groups.has(usernameKey(name.slice(1))) : state.names.has(usernameKey(name))

/** Remembers a group (its name and id) for completion and parsing. */
export const knowGroup = (state: State, g: { readonly id: string; readonly name: string }): void => {
  state.groups.set(usernameKey(g.name), g.name)
  state.groups.set(g.id, g.name)
}

/** The groups' `#` names, for completion. */
export const groupNames = (state: State): ReadonlyArray<string> => [...new Set([...state.groups.values()])].map((n) => `#${n}`)

/** Unread messages outside the current conversation, all peers together. */
export const unreadCount = (state: State): number => {
  let n = 0
  for (const [, u] of state.unread) n += u.count
  return n
}

/** The prompt: `> `, `[bob] > `, `(2 unread) > `, `[bob] (2 unread) > `. */
export const promptOf = (state: State): ReadonlyArray<Segment> => {
  const unread = unreadCount(state)
  return [
    ...(state.current === undefined ? [] : ["[", tone("name", state.current.name), "] "]),
    ...(unread === 0 ? [] : [tone("warn", `(${unread} unread)`), " "]),
    "> "
  ]
}
