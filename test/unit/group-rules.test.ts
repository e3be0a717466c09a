/**
 * The group rules of domain/Group.ts (protocol.md 5.5): which version wins, who may change
 * the list, and what a receiver does with a copy.
 */
import { assert, describe, it } from "@effect/vitest"
import * as Result from "effect/Result"
import { decodeInner } from "../../src/domain/Frames.ts"
import {
  changed, changeProblem, decide, type GroupState, groupSignedBytes, MAX_MEMBERS, type Member, newGroupId, supersedes,
  type UnsignedState
} from "../../src/domain/Group.ts"

const key = (c: string) => c.repeat(42) + "A"
const alice: Member = { name: "alice", key: key("a") }
const bob: Member = { name: "bob", key: key("b") }
const carol: Member = { name: "carol", key: key("c") }
const SIG = "A".repeat(86)
const state = (version: number, members: ReadonlyArray<Member>, creator = alice.key): GroupState =>
  ({ id: "AAAAAAAAAAAAAAAAAAAAAA", name: "team", version, creator, members, sig: SIG })
const signedByCreator = (s: GroupState) => s.sig === SIG
const v1 = state(1, [alice, bob])

describe("which version wins", () => {
  it("a higher version; at one version, the lower digest, the same way from both sides", () => {
    assert.isTrue(supersedes(state(2, [alice]), v1))
    assert.isFalse(supersedes(v1, state(2, [alice])))
    assert.isFalse(supersedes(v1, v1))
    const a = state(3, [alice, bob]), b = state(3, [alice, carol])
    assert.notStrictEqual(supersedes(a, b), supersedes(b, a))
  })
  it("the signed bytes cover the list, the version, the name and the creator", () => {
    const base = new TextDecoder().decode(groupSignedBytes(v1))
    for (const other of [state(2, [alice, bob]), state(1, [alice, carol]), { ...v1, name: "other" }, state(1, [alice, bob], bob.key)]) {
      assert.notStrictEqual(new TextDecoder().decode(groupSignedBytes(other)), base)
    }
    assert.match(base, /^\["p2pchat\/1 group",/)
  })
  it("ids are 128 random bits that decode as group ids", () => {
    const id = newGroupId()
    assert.strictEqual(id.length, 22)
    const inner = { type: "msg", id: "m", text: "t", sentAt: "", to: `#${id}`, group: { ...v1, id } }
    assert.isTrue(Result.isSuccess(decodeInner(JSON.stringify(inner))))
    assert.isTrue(Result.isFailure(decodeInner(JSON.stringify({ ...inner, group: { ...v1, id: "short" } }))))
  })
})

describe("who changes the list", () => {
  it("the creator adds and removes; nobody else; not the creator removed; at most 256 members", () => {
    assert.isUndefined(changeProblem(v1, alice, [carol], []))
    assert.isUndefined(changeProblem(v1, alice, [], ["BOB"]))
    assert.match(changeProblem(v1, bob, [carol], [])!, /only the group's creator/)
    assert.match(changeProblem(v1, alice, [], ["alice"])!, /creator cannot be removed/)
    assert.match(changeProblem(v1, alice, [bob], [])!, /member .* already/)
    assert.match(changeProblem(v1, alice, [], ["carol"])!, /not a member/)
    const many = Array.from({ length: MAX_MEMBERS - 2 }, (_, i) => ({ name: `u${i}`, key: key("d") }))
    assert.isUndefined(changeProblem(v1, alice, many, []))
    assert.match(changeProblem(v1, alice, [...many, carol], [])!, /at most 256/)
  })
  it("a change is the next version", () => {
    const next: UnsignedState = changed(v1, [carol], ["bob"])
    assert.deepStrictEqual([next.version, next.members], [2, [alice, carol]])
  })
})

describe("a received copy", () => {
  it("a member's copy with a newer list: accepted, the list applied", () => {
    const v2 = state(2, [alice, bob, carol])
    const d = decide(v1, false, v2, carol, bob, signedByCreator)
    assert.deepStrictEqual(d, { _tag: "Accept", state: v2, updated: true })
  })
  it("an older list does not replace a newer one; its sender is judged by the newer one", () => {
    const v2 = state(2, [alice, carol])
    const d = decide(v2, false, v1, bob, carol, signedByCreator)
    assert.deepStrictEqual(d, { _tag: "Refuse", reason: "bob is not a member in this node's list (version 2)", code: "not-a-member", state: undefined })
  })
  it("refused: a bad signature, another creator, a stranger, a sender whose proven key is not the list's, a group this node left", () => {
    assert.match((decide(v1, false, { ...v1, sig: "B".repeat(86) }, bob, alice, signedByCreator) as { reason: string }).reason, /not signed/)
    assert.match((decide(v1, false, state(5, [bob, alice], bob.key), bob, alice, signedByCreator) as { reason: string }).reason, /another creator/)
    assert.match((decide(undefined, false, v1, alice, carol, signedByCreator) as { reason: string }).reason, /not one of its members/)
    assert.match((decide(v1, false, v1, { name: "bob", key: key("x") }, alice, signedByCreator) as { reason: string }).reason, /bob is not a member/)
    assert.match((decide(v1, true, v1, alice, bob, signedByCreator) as { reason: string }).reason, /you left/)
    // the code each refusal's ack carries to the sender (protocol.md 5.5)
    const codeOf = (d: ReturnType<typeof decide>) => d._tag === "Refuse" ? d.code : undefined
    assert.deepStrictEqual([
      codeOf(decide(v1, false, { ...v1, sig: "B".repeat(86) }, bob, alice, signedByCreator)),
      codeOf(decide(v1, false, state(5, [bob, alice], bob.key), bob, alice, signedByCreator)),
      codeOf(decide(undefined, false, v1, alice, carol, signedByCreator)),
      codeOf(decide(v1, false, v1, { name: "bob", key: key("x") }, alice, signedByCreator)),
      codeOf(decide(v1, true, v1, alice, bob, signedByCreator))
    ], ["bad-list", "other-group", "not-in-group", "not-a-member", "left"])
  })
  it("a first copy to a member holds the group; a newer list refused for its sender is still kept", () => {
    assert.deepStrictEqual(decide(undefined, false, v1, alice, bob, signedByCreator), { _tag: "Accept", state: v1, updated: true })
    const v2 = state(2, [alice, carol])
    const d = decide(v1, false, v2, bob, carol, signedByCreator)
    assert.deepStrictEqual(d, { _tag: "Refuse", reason: "bob is not a member in this node's list (version 2)", code: "not-a-member", state: v2 })
  })
})
