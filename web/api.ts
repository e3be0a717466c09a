/**
 * The node's API as the page calls it (docs/web.md), and the JSON shapes it answers with:
 * those of the CLI's `--json` (cli.md "JSON output"). The cookie set by the first visit
 * carries the token; every request that changes something is a same-origin POST of JSON.
 */

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

/** `files --json`'s objects, and the `file` events (src/domain/Transfer.ts). */
export interface Transfer {
  readonly id: string
  readonly direction: "in" | "out"
  readonly peer: string
  readonly name: string
  readonly size: number
  readonly count: number
  readonly state: string
  readonly bytes: number
  readonly path?: string
  readonly reason?: string
  readonly at: string
  readonly rate?: number
}

/** The events of the live stream: the lines `start --json` prints (cli.md "Event lines"). */
export type NodeEvent =
  | ({ readonly event: "peer"; readonly status: "online" | "away" | "expired" | "left" } & Omit<Peer, "status">)
  | {
    readonly event: "message"
    readonly id: string
    readonly from: string
    readonly text: string
    readonly mode: string
    readonly at: string
    readonly sentAt?: string
    readonly verified?: boolean
    readonly to?: string
    readonly group?: string
  }
  | { readonly event: "delivered"; readonly id: string; readonly to: string }
  | { readonly event: "warning" | "error" | "info"; readonly message: string }
  | ({ readonly event: "file" } & Transfer)

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
