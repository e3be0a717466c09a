/**
 * The check that lets a member skip verifying a copy's list (Groups.receive): only the very
 * version it holds (the same signed bytes and the same signature) passes for it.
 */
import { assert, describe, it } from "@effect/vitest"
import { type GroupState, groupSignedBytes, type Member, sameSigned, sameVersion, supersedes } from "../../src/domain/Group.ts"

const key = (c: string) => c.repeat(42) + "A"
const alice: Member = { name: "alice", key: key("a") }
const bob: Member = { name: "bob", key: key("b") }
const held: GroupState = { id: "AAAAAAAAAAAAAAAAAAAAAA", name: "team", version: 3, creator: alice.key, members: [alice, bob], sig: "A".repeat(86) }
const text = (s: GroupState) => new TextDecoder().decode(groupSignedBytes(s))

describe("the very version held", () => {
  it("a copy with equal fields (another object, as a decoded frame is) is the same version", () => {
    const copy: GroupState = JSON.parse(JSON.stringify(held))
    assert.isTrue(sameVersion(copy, held))
    assert.isFalse(supersedes(copy, held))
    assert.isFalse(supersedes(held, copy))
  })
  it("any change of a signed field, or of the signature, is another version", () => {
    const others: ReadonlyArray<GroupState> = [
      { ...held, sig: "B".repeat(86) },
      { ...held, name: "other" },
      { ...held, version: 4 },
      { ...held, creator: bob.key },
      { ...held, members: [alice] },
      { ...held, members: [bob, alice] },
      { ...held, members: [alice, { name: "bob", key: key("c") }] },
      { ...held, members: [alice, { name: "Bob", key: bob.key }] },
      { ...held, members: [alice, bob, { name: "carol", key: key("c") }] }
    ]
    for (const other of others) {
      assert.isFalse(sameVersion(other, held), JSON.stringify(other))
      // sameSigned is exactly "the same signed bytes"
      assert.strictEqual(sameSigned(other, held), text(other) === text(held))
    }
  })
})
