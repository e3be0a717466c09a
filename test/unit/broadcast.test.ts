/**
 * The pure parts of broadcast: who gets which mode, the console's `all` and `history *all*`
 * (parse, completion), and the lines that show a broadcast (history, send --all).
 */
import { assert, describe, it } from "@effect/vitest"
import { broadcastMode } from "../../src/chat/Broadcast.ts"
import type { Peer } from "../../src/domain/Peer.ts"
import { ALL } from "../../src/services/History.ts"
import { complete, parse } from "../../src/ui/parse.ts"
import { conversationLine, historyLine, recipientLine, recipientsNote } from "../../src/ui/render.ts"

const peer = (over: Partial<Peer>): Peer => ({
  username: "bob", key: "bob", address: "127.0.0.1", port: 1, udpPort: 1, proto: "p2pchat/1", id: "k", status: "online",
  manualAway: false, firstSeen: new Date(0), lastSeen: new Date(0), signed: true, ...over
} as Peer)

describe("broadcastMode", () => {
  it("secure to a p2pchat peer with a key and to a pinned name; the others skipped, or in the fallback mode", () => {
    assert.strictEqual(broadcastMode(peer({}), false, undefined), "noise")
    assert.strictEqual(broadcastMode(peer({}), false, "plain"), "noise")
    assert.strictEqual(broadcastMode(peer({ id: undefined }), true, "plain"), "noise")
    assert.strictEqual(broadcastMode(peer({ proto: "classic", id: undefined }), true, "classic-3des"), "noise")
    assert.match((broadcastMode(peer({ proto: "classic", id: undefined }), false, undefined) as { skipped: string }).skipped, /classic/)
    assert.match((broadcastMode(peer({ id: undefined }), false, undefined) as { skipped: string }).skipped, /no key/)
    assert.strictEqual(broadcastMode(peer({ proto: "classic", id: undefined }), false, "classic-3des"), "classic-3des")
    assert.strictEqual(broadcastMode(peer({ id: undefined }), false, "plain"), "plain")
  })
})

describe("the console's `all`", () => {
  const known = () => true
  it("is a command outside a conversation and with its slash; text in a conversation without it", () => {
    assert.deepInclude(parse("all hello there", false, known), { _tag: "command", name: "all" })
    assert.deepInclude(parse("/all hello", true, known), { _tag: "command", name: "all" })
    assert.deepStrictEqual(parse("all hello", true, known), { _tag: "text", text: "all hello" })
    assert.deepInclude(parse("history *all*", true, () => false), { _tag: "command", name: "history" })
  })
  it("completes: the command, its flags, and *all* after history", () => {
    assert.include(complete("al", [], false)[0], "all ")
    assert.deepStrictEqual(complete("all --p", [], false)[0], ["--plain"])
    assert.include(complete("history *", ["bob"], false)[0], "*all* ")
  })
})

describe("how a broadcast is shown", () => {
  it("history '*all*': once, with the recipients by state; a copy in a peer's conversation is marked", () => {
    const recipients = [
      { peer: "bob", mode: "noise", state: "delivered" },
      { peer: "dave", mode: "noise", state: "pending" },
      { peer: "carol", mode: "noise", state: "delivered" }
    ] as const
    assert.strictEqual(recipientsNote(recipients), "delivered to bob, carol; pending for dave")
    const line = conversationLine({ id: "1", conversation: ALL, direction: "sent", text: "hi", at: "2026-12-01T13:00:00.000Z", recipients })
    assert.match(line, /^\[.*\] me -> \*all\*: hi \(delivered to bob, carol; pending for dave\)$/)
    const copy = historyLine({ id: "1", peer: "bob", direction: "sent", text: "hi", at: "2026-12-01T13:00:00.000Z", mode: "noise", state: "delivered", conversation: ALL })
    assert.match(copy, /me -> bob \(to everyone\): hi \(delivered\)$/)
    const got = historyLine({ id: "1", peer: "alice", direction: "received", text: "hi", at: "2026-12-01T13:00:00.000Z", mode: "noise", state: "received", conversation: ALL })
    assert.match(got, /\] alice \(to everyone\): hi$/)
  })
  it("send --all: one line per recipient", () => {
    assert.strictEqual(recipientLine({ peer: "bob", mode: "noise", state: "delivered" }), "delivered to bob")
    assert.strictEqual(recipientLine({ peer: "dave", mode: "noise", state: "pending", reason: "unreachable" }), "pending for dave: unreachable")
    assert.strictEqual(recipientLine({ peer: "old", mode: null, state: "skipped", reason: "classic" }), "skipped old: classic")
  })
})
