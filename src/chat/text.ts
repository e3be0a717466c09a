/**
 * The sentences the sending side says to its user, in one place: each names the peer, what
 * happened, and what becomes of the message.
 */
import { fingerprint } from "../domain/Fingerprint.ts"
import type { Peer } from "../domain/Peer.ts"
import { idToKey } from "../services/Crypto.ts"
import { SessionError, transportCause } from "../dialects/noise/channel.ts"
import { SendError } from "./SendError.ts"

export const NO_NAME_FOR_SECURE =
  "a secure session proves your username to the peer, and this node has none; start it with --name"

/** What the sending side knows of a peer it writes to. */
export type Target = Pick<Peer, "key" | "username" | "address" | "port" | "id" | "proto">

const where = (peer: Target) => `${peer.username} (${peer.address}:${peer.port})`

const isClassicPeer = (peer: Target) => peer.proto !== "p2pchat/1"

/** What becomes of a message to `peer` that did not go now. */
export const keptNote = (peer: Target): string =>
  isClassicPeer(peer) ? "" : `; the message is kept and sent again when ${peer.username} announces`

/** A session that failed by itself (decryption, handshake, trust), not by its connection. */
export const isSessionFault = (e: SessionError): boolean => transportCause(e) === undefined

export const linkClosed = new SessionError({ reason: "Closed", message: "connection closed" })

export const noAck = (seconds: string) =>
  new SessionError({ reason: "Timeout", message: `did not acknowledge the message within ${seconds}` })

/** What a failed secure handshake means for the user. */
export const handshakeFailed = (peer: Target, e: SessionError): SendError => {
  if (e.reason === "KeyChanged") {
    const name = e.username ?? peer.username
    return new SendError({
      reason: "KeyChanged",
      cause: e,
      message: `${e.message} From the command line: \`p2pchat trust ${name} FINGERPRINT\`; ` +
        `in the console: \`trust ${name} FINGERPRINT\`. ` +
        `The message is kept as pending and is sent once you trust the new key (not before).`
    })
  }
  if (!isSessionFault(e)) {
    return new SendError({
      reason: "Unreachable",
      cause: e,
      message: `${where(peer)} ended the connection during the secure handshake (${e.message}); ` +
        `it may not accept secure sessions now${keptNote(peer)}`
    })
  }
  return new SendError({ reason: "Refused", cause: e, message: `${where(peer)}: ${e.message}${keptNote(peer)}` })
}

export const handshakeTimeout = (peer: Target, ms: number) =>
  `${where(peer)} did not complete the secure handshake within ${ms / 1000} s${keptNote(peer)}`

/** A send that failed on its link (after one more try on a new connection where it was lost). */
export const sendFailed = (peer: Target, e: SessionError): SendError => {
  if (e.reason === "PeerRefused") {
    return new SendError({
      reason: "KeyRejected",
      cause: e,
      message: `${peer.username} has pinned another key for you: compare fingerprints ` +
        `(\`whoami\` shows yours); ${peer.username} must \`trust\` your name with your key's fingerprint${keptNote(peer)}`
    })
  }
  return e.reason === "Timeout"
    ? new SendError({
      reason: "Timeout",
      cause: e,
      message: `${where(peer)} ${e.message}` +
        (isClassicPeer(peer)
          ? "; classic peers get one attempt"
          : `; the message stays pending and is sent again when ${peer.username} announces`)
    })
    : new SendError({
      reason: "Unreachable",
      cause: e,
      message: `lost the connection to ${where(peer)}: ${e.message}${keptNote(peer)}`
    })
}

export const unknownUser = (username: string) =>
  new SendError({ reason: "UnknownUser", message: `no user '${username}' is online; 'users' lists who is` })

/** What the user can do about a failed store, from SQLite's words. */
export const storageAdvice = (problem: string, dataDir: string): string =>
  /full/i.test(problem)
    ? "free some disk space"
    : /locked|busy/i.test(problem)
    ? "another program holds the database's write lock; stop it"
    : `fix the permissions of the data dir (${dataDir}) and its database`

export const pinMismatch = (
  peer: Target,
  count: number,
  m: { readonly pinnedFingerprint: string; readonly announcedFingerprint: string | undefined }
) =>
  `${count} secure message(s) to ${peer.username} wait: ${peer.username} now announces ` +
  (m.announcedFingerprint === undefined
    ? `no key, not the pinned ${m.pinnedFingerprint}. Someone may be `
    : `a key with fingerprint ${m.announcedFingerprint}, not the pinned ${m.pinnedFingerprint}. Someone may be `) +
  `impersonating ${peer.username}. Compare fingerprints with ${peer.username}; once a secure session has proven ` +
  `the new key (a new message tries one), \`trust ${peer.username} FINGERPRINT\` ` +
  `(or \`p2pchat trust ${peer.username} FINGERPRINT\`) sends them`

export const classicNotKept = (problem: string) =>
  `could not store the message, not sent (${problem}); classic peers get one attempt, so it is not ` +
  `kept: send it again once the disk has room or the data dir is writable`

export const notKept = (problem: string, waiting: number, advice: string) =>
  `could not store the message, not sent and not kept (${problem}): ${waiting} messages ` +
  `already wait in memory until they can be stored, the most kept; ${advice}`

export const keptInMemory = (username: string, problem: string, waiting: number, advice: string) =>
  `could not store the message to ${username} (${problem}): kept in memory until it can be ` +
  `stored, then sent (${waiting} message(s) wait); it is lost if p2pchat exits before that: ${advice}`

/** Before a message to a pinned name leaves without a secure session (the user asked for it). */
export const pinnedDowngrade = (peer: Target, mode: "plain" | "classic-3des") =>
  `${peer.username} has a pinned key, and this message goes WITHOUT a secure session ` +
  `(${mode === "plain" ? "plain text" : "the classic dialect, whose keys anyone can have"}), as you asked: ` +
  `anyone on the LAN can read it, and nothing proves that ${peer.address}:${peer.port} is ${peer.username}`

/** A secure message to a pinned name that is not announced with its pinned key: it waits. */
export const pinnedNotProven = (peer: Target) =>
  `${peer.username} has a pinned key, but the node at ${peer.address}:${peer.port} announces ${peer.username} ` +
  `${peer.id === undefined ? "with no key" : "as a classic program"}; someone may be impersonating ` +
  `${peer.username}. The message is kept as pending and goes only over a secure session that proves ` +
  `${peer.username}'s pinned key, once ${peer.username} announces it`

/** A pinned name announced with another key or none (told at once, once per key and address). */
export const pinnedAnnouncedOtherwise = (peer: Target, pinnedFingerprint: string) =>
  `${peer.username} is announced from ${peer.address}:${peer.port} ` +
  (peer.id === undefined
    ? `with no key, but ${peer.username} has a pinned key (fingerprint ${pinnedFingerprint})`
    : `with a key whose fingerprint is ${fingerprint(idToKey(peer.id))}, not the pinned ${pinnedFingerprint}`) +
  `: someone may be impersonating ${peer.username}. Secure messages to ${peer.username} go only to a node ` +
  `that proves the pinned key; no message goes there`

/** A name that reads like other names (each spelled out with its unusual characters). */
export const lookAlike = (name: string, others: ReadonlyArray<string>) =>
  `the name ${name} looks like ${others.join(", ")}, but it is another user: ` +
  `check the fingerprint (\`verify\`) before you believe it is who it seems`
