/**
 * The node's API as the page calls it (docs/web.md), and the JSON shapes it answers with:
 * those of the CLI's `--json` (cli.md "JSON output"). The cookie set by the first visit
 * carries the token; every request that changes something is a same-origin POST of JSON.
 */
import type { TransferEvent } from "../src/domain/Transfer.ts"

export interface Me {
  readonly username: string | null
  readonly fingerprint: string | null
  readonly id: string | null
}

/** `peers --json` */
export interface Peer {
  readonly username: string
  readonly address: string
  readonly port: number
  readonly status: "online" | "away"
  readonly proto: "classic" | "p2pchat/1"
  readonly fingerprint: string | null
  readonly signed?: boolean
  readonly conflict?: string
}

export interface Key {
  readonly username: string
  readonly fingerprint: string
  readonly verified: boolean
}

/** `group list --json` */
export interface Group {
  readonly id: string
  readonly name: string
  readonly members: ReadonlyArray<string>
  readonly left: boolean
}

export interface Recipient {
  readonly peer: string
  readonly mode: string | null
  readonly state: string
  readonly reason?: string
}

/** A line of `history --json` (one-to-one, `*all*` or a group's). */
export interface HistoryLine {
  readonly id: string
  readonly peer?: string
  readonly direction: "sent" | "received"
  readonly text: string
  readonly at: string
  readonly mode?: string
  readonly state?: string
  readonly verified?: boolean
  readonly conversation?: string
  readonly recipients?: ReadonlyArray<Recipient>
}

/** `verify USER --json` */
export interface Verify {
  readonly username: string
  readonly fingerprint: string
  readonly pinned: string | null
  readonly verified: boolean
  readonly announced: string | null
  readonly presented: string | null
}

/** `send --json`, `send --all --json`, `send '#NAME' --json` */
export interface SendResult {
  readonly id: string
  readonly peer?: string
  readonly mode?: string
  readonly state?: string
  readonly conversation?: string
  readonly recipients?: ReadonlyArray<Recipient>
}

/**
 * `files --json`'s objects, and the `file` events without their `event` (with `rate` while
 * receiving): the node's own types, imported as types only, so nothing of the node is bundled.
 */
export type Transfer = Omit<TransferEvent, "event">

/** The events of the live stream: the lines `start --json` prints (cli.md "Event lines"). */
export type { UiEvent as NodeEvent } from "../src/services/Events.ts"

export class ApiError extends Error {
  constructor(readonly status: number, message: string) {
    super(message)
  }
}

const answer = async <A>(response: Response): Promise<A> => {
  const body = await response.json().catch(() => ({ message: response.statusText }))
  if (!response.ok) throw new ApiError(response.status, (body as { message?: string }).message ?? response.statusText)
  return body as A
}

export const get = <A>(path: string): Promise<A> => fetch(path, { credentials: "same-origin" }).then(answer<A>)

export const post = <A>(path: string, body: unknown): Promise<A> =>
  fetch(path, {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body)
  }).then(answer<A>)

export const query = (path: string, params: Record<string, string>): string => `${path}?${new URLSearchParams(params).toString()}`
