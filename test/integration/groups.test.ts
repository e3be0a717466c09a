/**
 * Groups (protocol.md 5.5, cli.md "group"), end to end: in-process nodes on loopback (real
 * TCP, real SQLite in temp data dirs), and the built CLI for the group commands. Every wait
 * is bounded.
 */
import { assert, describe, it } from "@effect/vitest"
import { Context, Effect } from "effect"
import { expect } from "vitest"
import { Groups } from "../../src/chat/Groups.ts"
import { Links } from "../../src/chat/Links.ts"
import { groupConversation } from "../../src/domain/Conversation.ts"
import { groupSignedBytes, type UnsignedState } from "../../src/domain/Group.ts"
import { Crypto } from "../../src/services/Crypto.ts"
import { recipientLine } from "../../src/ui/render.ts"
import { freeTcpPort, meet, polls, startNode, tempDir, type TestNode } from "../support/node.ts"
import { runCli, useBuiltCli } from "../support/cli.ts"

// acks wait 5 s: an away member is refused at once anyway, and a loaded machine can hold an ack past 1 s
const TUNING = { ackTimeoutMs: 5000, connectTimeoutMs: 1000, classicPauseMs: 100, retryEveryMs: 300 }
const { waitUntil, waitUntilEffect } = polls(5000)

const groupsOf = (node: TestNode) => Context.get(node.context, Groups)

/** What `node` received in a group's conversation: [from, text]. */
const receivedIn = (node: TestNode, groupId: string) =>
  Effect.map(node.history.inConversation(groupConversation(groupId)), (rows) =>
    rows.flatMap((r) => r.direction === "received" ? [[r.peer, r.text]] : []))

/** Per-member states of what `node` sent in a group: one object per message. */
const states = (node: TestNode, groupId: string) =>
  Effect.map(node.history.inConversation(groupConversation(groupId)), (rows) =>
    rows.flatMap((r) => r.direction === "sent" ? [Object.fromEntries(r.recipients.map((c) => [c.peer, c.state]))] : []))

/** A first secure message each way pins the keys (trust on first use): members need pins. */
const pinned = (a: TestNode, ...others: ReadonlyArray<TestNode>) =>
  Effect.gen(function*() {
    for (const o of others) {
      yield* meet(a, o)
      yield* meet(o, a)
      yield* a.initiator.send(o.name, `hi ${o.name}`)
    }
  })

const warnings = (node: TestNode) => node.events.flatMap((e) => e.event === "warning" ? [e.message] : [])

describe("groups over real sockets and storage", () => {
  it.live("a group of three with one member away: it catches up (the list and the message) exactly once", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const carolDir = yield* tempDir("carol")
      const carol = yield* startNode("carol", { tuning: TUNING, dataDir: carolDir })
      yield* pinned(alice, bob, carol)
      yield* carol.close
      const made = yield* groupsOf(alice).create("team", ["bob", "carol"])
      const id = made.group.state.id
      const told = yield* alice.initiator.groupChanged(made)
      assert.deepStrictEqual(Object.fromEntries(told.recipients.map((r) => [r.peer, r.state])), { bob: "delivered", carol: "pending" })
      const sent = yield* alice.initiator.group("#team", "hello team")
      assert.strictEqual(sent.conversation, groupConversation(id))
      assert.deepStrictEqual(Object.fromEntries(sent.recipients.map((r) => [r.peer, r.state])), { bob: "delivered", carol: "pending" })
      // bob holds the group (not only its creator), and the message, once
      const bobs = yield* groupsOf(bob).resolve("team")
      assert.deepStrictEqual(bobs.state.members.map((m) => m.name), ["alice", "bob", "carol"])
      assert.deepStrictEqual((yield* receivedIn(bob, id)).map((r) => r[1]), [made.notice, "hello team"])
      assert.deepStrictEqual(yield* states(alice, id), [{ bob: "delivered", carol: "pending" }, { bob: "delivered", carol: "pending" }])
      // carol comes back (same key, new port) and is heard: both copies, in order, once
      const back = yield* startNode("carol", { tuning: TUNING, dataDir: carolDir })
      yield* meet(alice, back)
      yield* waitUntilEffect("carol's copies delivered", Effect.map(states(alice, id), (s) => s.every((m) => m["carol"] === "delivered")))
      yield* meet(alice, back)
      yield* Effect.sleep("700 millis") // two retry intervals: nothing more goes
      assert.deepStrictEqual(yield* receivedIn(back, id), [["alice", made.notice], ["alice", "hello team"]])
      assert.strictEqual((yield* groupsOf(back).resolve(id)).state.version, 1)
      const event = back.events.find((e) => e.event === "message" && e.text === "hello team")
      assert.deepInclude(event, { to: groupConversation(id), group: "team" })
    }))

  it.live("add and remove: every member learns the list; a removed member is told, then gets nothing; its later message is refused", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const carol = yield* startNode("carol", { tuning: TUNING })
      yield* pinned(alice, bob, carol)
      yield* meet(bob, carol)
      yield* meet(carol, bob)
      const made = yield* groupsOf(alice).create("team", ["bob"])
      const id = made.group.state.id
      yield* alice.initiator.groupChanged(made)
      const added = yield* groupsOf(alice).change("team", ["carol"], [])
      yield* alice.initiator.groupChanged(added)
      for (const n of [bob, carol]) assert.deepStrictEqual((yield* groupsOf(n).resolve(id)).state.members.map((m) => m.name), ["alice", "bob", "carol"])
      // carol, a member now, writes to the group: bob accepts it by the list alice signed
      yield* carol.initiator.group("team", "carol here")
      assert.deepInclude(yield* receivedIn(bob, id), ["carol", "carol here"])
      const v2 = (yield* groupsOf(bob).resolve(id)).state
      const removed = yield* groupsOf(alice).change("team", [], ["bob"])
      const told = yield* alice.initiator.groupChanged(removed)
      assert.sameMembers(told.recipients.map((r) => r.peer), ["bob", "carol"])
      const bobList = (yield* groupsOf(bob).resolve(id)).state
      assert.deepStrictEqual([bobList.version, bobList.members.map((m) => m.name)], [3, ["alice", "carol"]])
      const bobCount = (yield* receivedIn(bob, id)).length
      const after = yield* alice.initiator.group("team", "after bob")
      assert.deepStrictEqual(after.recipients.map((r) => r.peer), ["carol"])
      yield* Effect.sleep("300 millis")
      assert.strictEqual((yield* receivedIn(bob, id)).length, bobCount)
      assert.deepInclude(yield* receivedIn(carol, id), ["alice", "after bob"])
      // bob's own node refuses to write to it; a copy sent anyway (with the list where bob was a member) is refused by carol
      const refusedHere = yield* Effect.flip(bob.initiator.group(id, "still here?"))
      assert.match(refusedHere.message, /not a member/)
      const carolPeer = (yield* bob.registry.lookup("carol")).pipe((o) => o._tag === "Some" ? o.value : assert.fail("carol unknown"))
      yield* Context.get(bob.context, Links).deliver(carolPeer, "noise", {
        id: "forged-1", text: "let me in", sentAt: new Date().toISOString(), to: groupConversation(id), group: { state: v2, left: false }
      })
      yield* waitUntil("carol's refusal", () => warnings(carol).some((w) => /refused a message for the group team .* from bob: bob is not a member/.test(w)))
      assert.notDeepInclude(yield* receivedIn(carol, id), ["bob", "let me in"])
    }))

  it.live("a non-member's copy is refused: a list signed by another creator for the group's id, and a stranger to the list", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const mallory = yield* startNode("mallory", { tuning: TUNING })
      yield* pinned(alice, bob)
      yield* meet(mallory, bob)
      const made = yield* groupsOf(alice).create("team", ["bob"])
      yield* alice.initiator.groupChanged(made)
      const real = made.group.state
      const bobPeer = (yield* mallory.registry.lookup("bob")).pipe((o) => o._tag === "Some" ? o.value : assert.fail("bob unknown"))
      const links = Context.get(mallory.context, Links)
      const crypto = Context.get(mallory.context, Crypto)
      const forged: UnsignedState = {
        ...real, version: 9, creator: mallory.id, members: [...real.members, { name: "mallory", key: mallory.id }]
      }
      const send = (id: string, state: typeof real) =>
        links.deliver(bobPeer, "noise", { id, text: "hi team", sentAt: new Date().toISOString(), to: groupConversation(real.id), group: { state, left: false } })
      yield* send("m-1", { ...forged, sig: crypto.signPresence(groupSignedBytes(forged)) })
      yield* send("m-2", real) // alice's own list, which does not hold mallory
      yield* waitUntil("two refusals", () => warnings(bob).filter((w) => w.includes("from mallory")).length === 2)
      assert.match(warnings(bob).filter((w) => w.includes("from mallory"))[0]!, /another group, by another creator/)
      assert.match(warnings(bob).filter((w) => w.includes("from mallory"))[1]!, /mallory is not a member/)
      assert.deepStrictEqual(yield* receivedIn(bob, real.id), [["alice", made.notice]])
      assert.strictEqual((yield* groupsOf(bob).resolve(real.id)).state.version, 1)
    }))

  it.live("a member leaves: its node refuses what comes later; the creator removes it in a new version that reaches the others", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const carol = yield* startNode("carol", { tuning: TUNING })
      yield* pinned(alice, bob, carol)
      const made = yield* groupsOf(alice).create("team", ["bob", "carol"])
      const id = made.group.state.id
      yield* alice.initiator.groupChanged(made)
      const creatorLeaves = yield* Effect.flip(groupsOf(alice).leave("team"))
      assert.match(creatorLeaves.message, /creator cannot leave/)
      yield* meet(carol, alice)
      yield* carol.initiator.groupChanged(yield* groupsOf(carol).leave("team"))
      yield* waitUntilEffect("alice's version 2", Effect.map(groupsOf(alice).resolve(id), (g) => g.state.version === 2))
      yield* waitUntilEffect("bob learns it", Effect.map(groupsOf(bob).resolve(id), (g) => g.state.members.length === 2))
      assert.deepStrictEqual((yield* groupsOf(bob).resolve(id)).state.members.map((m) => m.name), ["alice", "bob"])
      const carolLeft = yield* groupsOf(carol).resolve(id)
      assert.isString(carolLeft.leftAt)
      assert.match((yield* Effect.flip(carol.initiator.group(id, "x"))).message, /you left/)
    }))
})

describe("p2pchat group (the built CLI)", () => {
  useBuiltCli({ cleanupAfterEach: true })

  it.live("history '#NAME': each message sent once with per-member states, those received with their sender; ambiguous names refused", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bob = yield* startNode("bob", { tuning: TUNING })
      const carol = yield* startNode("carol", { tuning: TUNING })
      yield* pinned(alice, bob, carol)
      yield* carol.close
      const made = yield* groupsOf(alice).create("team", ["bob", "carol"])
      const id = made.group.state.id
      yield* alice.initiator.groupChanged(made)
      yield* alice.initiator.group("#team", "hello team")
      yield* meet(bob, alice)
      yield* bob.initiator.group("team", "hi from bob")
      const history = (node: TestNode, ...args: Array<string>) =>
        Effect.promise(() => runCli(["history", ...args, "--data-dir", node.dataDir, "--name", node.name, "--bind", "127.0.0.1"]))
      const text = yield* history(alice, "#team")
      expect(text.code, text.stderr).toBe(0)
      const lines = text.stdout.trim().split("\n")
      expect(lines).toHaveLength(3)
      expect(lines[1]).toMatch(/^\[[-\d: ]+\] me -> #team: hello team \(delivered to bob; pending for carol\)$/)
      expect(lines[2]).toMatch(/^\[[-\d: ]+\] bob in #team: hi from bob$/)
      const json = yield* history(alice, `#${id}`, "--json")
      const rows = JSON.parse(json.stdout)
      expect(rows[1]).toMatchObject({
        conversation: `#${id}`, direction: "sent", text: "hello team",
        recipients: [{ peer: "bob", mode: "noise", state: "delivered" }, { peer: "carol", mode: "noise", state: "pending" }]
      })
      expect(rows[2]).toMatchObject({ conversation: `#${id}`, direction: "received", peer: "bob", text: "hi from bob" })
      const bobs = yield* history(bob, "#team", "--grep", "hello")
      expect(bobs.stdout.trim()).toMatch(/\] alice in #team: hello team$/)
      // a second group named team: the name is refused, listing both ids
      yield* groupsOf(alice).create("team", ["bob"])
      const ambiguous = yield* history(alice, "#team")
      expect(ambiguous.code).toBe(1)
      expect(ambiguous.stderr).toMatch(new RegExp(`2 groups are named 'team' here \\(ids .*${id}.*\\): give its id instead`))
      const unknown = yield* history(alice, "#nope")
      expect([unknown.code, unknown.stderr.includes("no group 'nope'")]).toEqual([1, true])
    }))

  it.live("a copy its receiver refuses: the sender records and shows it refused (not delivered), sends it no more; send '#NAME' exits 1 saying who and why", () =>
    Effect.gen(function*() {
      const alice = yield* startNode("alice", { tuning: TUNING })
      const bobDir = yield* tempDir("bob")
      const bob = yield* startNode("bob", { tuning: TUNING, dataDir: bobDir })
      const carol = yield* startNode("carol", { tuning: TUNING })
      yield* pinned(alice, bob, carol)
      yield* meet(bob, carol)
      yield* meet(carol, bob)
      const made = yield* groupsOf(alice).create("team", ["bob", "carol"])
      const id = made.group.state.id
      yield* alice.initiator.groupChanged(made)
      // bob is away while alice removes him: he never hears of it, and still holds version 1
      yield* bob.close
      const removed = yield* groupsOf(alice).change("team", [], ["bob"])
      const told = yield* alice.initiator.groupChanged(removed)
      assert.deepStrictEqual(Object.fromEntries(told.recipients.map((r) => [r.peer, r.state])), { carol: "delivered", bob: "pending" })
      // bob comes back on another port, which alice is not told: her notice to him cannot reach him
      let port = yield* freeTcpPort
      for (let i = 0; i < 5 && port === bob.port; i++) port = yield* freeTcpPort
      const back = yield* startNode("bob", { tuning: TUNING, dataDir: bobDir, config: { tcpPort: port } })
      yield* meet(back, alice)
      yield* meet(back, carol)
      assert.strictEqual((yield* groupsOf(back).resolve(id)).state.version, 1)

      const sent = yield* back.initiator.group("#team", "am I still in?")
      const byPeer = Object.fromEntries(sent.recipients.map((r) => [r.peer, r]))
      for (const who of ["alice", "carol"]) {
        expect(byPeer[who]).toEqual({
          peer: who, mode: "noise", state: "refused", refused: "not-a-member", reason: "you are not a member of the group in their list"
        })
      }
      expect(recipientLine(byPeer["carol"]!)).toBe("refused by carol: you are not a member of the group in their list")
      // stored refused (final, not pending), never shown to carol, and not sent again
      assert.deepStrictEqual((yield* states(back, id)).at(-1), { alice: "refused", carol: "refused" })
      assert.isFalse((yield* back.history.pendingFor()).some((h) => h.id === sent.id))
      const refusals = () => warnings(carol).filter((w) => w.includes("from bob")).length
      yield* waitUntil("carol's refusal", () => refusals() === 1)
      yield* Effect.sleep("700 millis") // two retry intervals
      assert.strictEqual(refusals(), 1)
      assert.notDeepInclude(yield* receivedIn(carol, id), ["bob", "am I still in?"])
      assert.isFalse(back.events.some((e) => e.event === "delivered" && e.id === sent.id))

      const cli = (...args: Array<string>) =>
        Effect.promise(() => runCli([...args, "--data-dir", bobDir, "--name", "bob", "--bind", "127.0.0.1"]))
      // history: the text line and the JSON say refused, and why
      const text = yield* cli("history", "#team")
      expect(text.code, text.stderr).toBe(0)
      expect(text.stdout.trim().split("\n").at(-1)).toMatch(
        /\] me -> #team: am I still in\? \(refused by alice, carol \(you are not a member of the group in their list\)\)$/
      )
      const one = yield* cli("history", "carol")
      expect(one.stdout).toMatch(new RegExp(`me -> carol in #${id}: am I still in\\? \\(refused: you are not a member of the group in their list\\)`))
      const rows = JSON.parse((yield* cli("history", "carol", "--json")).stdout) as Array<Record<string, unknown>>
      expect(rows.find((r) => r["id"] === sent.id)).toMatchObject({ state: "refused", refused: "not-a-member" })
      // send '#team' from the command line: exit 1, naming who refused and why
      yield* waitUntilEffect("bob's node saved alice and carol", Effect.map(cli("peers", "--json"), (r) =>
        r.stdout.includes("\"alice\"") && r.stdout.includes("\"carol\"")), 8000)
      const again = yield* cli("send", "#team", "still?")
      expect(again.code, again.stderr).toBe(1)
      expect(again.stdout).toMatch(/^refused by (alice|carol): you are not a member of the group in their list$/m)
      expect(again.stderr).toMatch(/not delivered to 2 of 2 member\(s\): refused by (alice|carol): you are not a member of the group in their list; refused by (alice|carol): /)
      expect(again.stderr).not.toMatch(/pending ones/)
      const json = yield* cli("send", "#team", "still??", "--json")
      expect(json.code).toBe(1)
      expect(JSON.parse(json.stdout).recipients).toEqual(expect.arrayContaining([
        expect.objectContaining({ peer: "carol", state: "refused", refused: "not-a-member" })
      ]))
    }))

  it.live("usage errors exit 2; a member without a pinned key is refused (exit 1); list and show print JSON", () =>
    Effect.gen(function*() {
      const dir = yield* tempDir("alice-cli")
      const cli = (...args: Array<string>) =>
        Effect.promise(() => runCli([...args, "--data-dir", dir, "--name", "alice", "--bind", "127.0.0.1"]))
      for (const [args, message] of [
        [["group", "add", "team"], /missing USER/],
        [["group", "create", "bad\u0007name"], /not a group name/],
        [["group", "create", "team", "alice"], /alice is you/]
      ] as const) {
        const r = yield* cli(...args)
        expect(r.code, `${args.join(" ")}: ${r.stderr}`).toBe(2)
        expect(r.stderr).toMatch(message)
      }
      const nobody = yield* cli("group", "create", "team", "bob")
      expect(nobody.code).toBe(1)
      expect(nobody.stderr).toMatch(/bob has no pinned key/)
      const made = yield* cli("group", "create", "solo", "--json")
      expect(made.code, made.stderr).toBe(0)
      const json = JSON.parse(made.stdout)
      expect(json.group).toMatchObject({ name: "solo", version: 1, creator: "alice", left: false })
      expect(json.notice.recipients).toEqual([])
      const list = yield* cli("group", "list", "--json")
      expect(JSON.parse(list.stdout)).toEqual([{ id: json.group.id, name: "solo", version: 1, creator: "alice", members: ["alice"], left: false }])
      const show = yield* cli("group", "show", "#solo", "--json")
      expect(JSON.parse(show.stdout).members[0]).toMatchObject({ name: "alice", fingerprint: expect.stringMatching(/^(\d{5} ){11}\d{5}$/) })
      const missing = yield* cli("group", "show", "nope")
      expect(missing.code).toBe(1)
      expect(missing.stderr).toMatch(/no group 'nope'/)
      const leave = yield* cli("group", "leave", "solo")
      expect(leave.code).toBe(1)
      expect(leave.stderr).toMatch(/creator cannot leave/)
      const sent = yield* cli("send", "#solo", "note to self")
      expect(sent.code, sent.stderr).toBe(0)
    }))
})
