/**
 * A peer as the registry knows it, and the rules of its status (PROTOCOL.md "Peer
 * registry"): online up to `awayAfter` after its last announcement (away if it said so),
 * away up to `expireAfter`, then expired.
 */
export type Proto = "classic" | "p2pchat/1"
export type PeerStatus = "online" | "away"

export interface Peer {
  /** As the peer last wrote it. */
  readonly username: string
  /** Lower-cased: usernames compare case-insensitively. */
  readonly key: string
  readonly address: string
  /** TCP chat port. */
  readonly port: number
  /** Source port of its last announcement: where a p2pchat peer listens for presence. */
  readonly udpPort: number
  readonly proto: Proto
  /** The Noise static public key, base64url; classic peers have none. */
  readonly id: string | undefined
  readonly status: PeerStatus
  readonly manualAway: boolean
  readonly firstSeen: Date
  readonly lastSeen: Date
  /**
   * Whether its presence is signed by the key in `id` (with a fresh stamp). Only a signed
   * announcement moves or replaces a keyed entry; an unsigned one is a hint.
   */
  readonly signed: boolean
  /** Another identity heard for this username, shown to the user. */
  readonly conflict: string | undefined
}

export interface Timers {
  readonly awayAfterMs: number
  readonly expireAfterMs: number
}

export type Liveness = PeerStatus | "expired"

/** Status for an age in milliseconds: the boundaries belong to the earlier state. */
export const livenessAt = (ageMs: number, manualAway: boolean, t: Timers): Liveness =>
  ageMs > t.expireAfterMs ? "expired" : ageMs > t.awayAfterMs || manualAway ? "away" : "online"

/** Milliseconds of age at which the status next changes, or undefined when it will not. */
export const nextTransitionAge = (ageMs: number, manualAway: boolean, t: Timers): number | undefined =>
  ageMs <= t.awayAfterMs && !manualAway ? t.awayAfterMs + 1 : ageMs <= t.expireAfterMs ? t.expireAfterMs + 1 : undefined

/** A classic peer has no key; "classic" stands for its identity. */
export const identityOf = (id: string | undefined): string => id ?? "classic"

/**
 * Who keeps a name (protocol: "The peer registry"): a signed announcement takes it from an
 * unsigned entry and refreshes (or moves) its own signed entry; an unsigned one never
 * touches a signed entry, never moves a keyed one, and refreshes only the same identity.
 * The one left out is reported as a conflict.
 */
export const decide = (before: Peer, after: Pick<Peer, "id" | "address" | "signed">): "keep" | "take" => {
  const same = identityOf(before.id) === identityOf(after.id)
  if (after.signed) return same || !before.signed ? "take" : "keep"
  if (before.signed || !same) return "keep"
  return before.id !== undefined && before.address !== after.address ? "keep" : "take"
}
