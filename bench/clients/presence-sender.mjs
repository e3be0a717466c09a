// The peers of presence-cost: M signed presence peers, each a UDP socket on its own loopback
// address (127.3.x.y: one host per peer, as on a LAN), sending signed announcements to one
// node. Plain Node, no p2pchat code: a peer's identity is an Ed25519 key whose public point
// has an even x, published as the X25519 u of that point, u = (1 + y) / (1 - y); an XEdDSA
// verifier checks exactly an Ed25519 signature against that point, so node:crypto's
// deterministic Ed25519 signatures are valid XEdDSA signatures of the peer's id.
//
// Run by bench/drivers/presence.ts with fork() (an IPC channel): it answers
//   {init: {port, peers, rounds}}      -> makes the keys and signs every round: {ready, ms}
//   {send: {round, from, to}}          -> sends peers [from, to) of that round: {sent}
// Round r of peer i is stamped base + 8000 r (one announcement every 8 s). It exits when
// its parent goes away.
import { createPrivateKey, generateKeyPairSync, sign } from "node:crypto"
import * as dgram from "node:dgram"

const P = (1n << 255n) - 19n
const fromLE = (b) => BigInt("0x" + (Buffer.from(b).reverse().toString("hex") || "0"))
const toLE32 = (n) => Buffer.from(n.toString(16).padStart(64, "0"), "hex").reverse()
const powMod = (b, e) => {
  let r = 1n
  let x = ((b % P) + P) % P
  for (let k = e; k > 0n; k >>= 1n) {
    if (k & 1n) r = (r * x) % P
    x = (x * x) % P
  }
  return r
}

/** A peer's key: Ed25519 with an even x, and its id (the X25519 u, base64url). */
const makePeer = () => {
  for (;;) {
    const { privateKey } = generateKeyPairSync("ed25519", { privateKeyEncoding: { format: "jwk" }, publicKeyEncoding: { format: "jwk" } })
    const A = Buffer.from(privateKey.x, "base64url")
    if ((A[31] & 0x80) !== 0) continue
    const y = fromLE(A)
    const u = ((1n + y) * powMod(1n - y + P, P - 2n)) % P
    return { key: createPrivateKey({ key: privateKey, format: "jwk" }), id: toLE32(u).toString("base64url") }
  }
}

const BASE_TS = 1_700_000_000_000
let port
let rounds = [] // rounds[r][i]: the datagram of peer i in round r
let sockets = []

const init = async (o) => {
  const t0 = performance.now()
  port = o.port
  const peers = Array.from({ length: o.peers }, makePeer)
  rounds = []
  for (let r = 0; r < o.rounds; r++) {
    rounds.push(peers.map((p, i) => {
      // As encodeAnnouncement writes it; the signature covers what PROTOCOL.md says.
      const username = `peer-${String(i).padStart(4, "0")}`
      const value = { username, proto: "p2pchat/1", port: 10_000 + i, status: "online", id: p.id, ts: BASE_TS + 8000 * r }
      const signed = JSON.stringify(["p2pchat/1 announce", username, value.port, value.status, p.id, value.ts])
      return Buffer.from(JSON.stringify({ ...value, sig: sign(null, Buffer.from(signed), p.key).toString("base64url") }))
    }))
  }
  sockets = await Promise.all(peers.map((_, i) =>
    new Promise((resolve, reject) => {
      const s = dgram.createSocket("udp4")
      s.once("error", reject)
      s.bind(0, `127.3.${Math.floor(i / 250)}.${(i % 250) + 1}`, () => resolve(s))
    })
  ))
  return { ready: true, ms: performance.now() - t0, bytes: rounds[0]?.[0]?.length ?? 0 }
}

const send = async ({ round, from, to }) => {
  let sent = 0
  await Promise.all(rounds[round].slice(from, to).map((d, k) =>
    new Promise((resolve) => sockets[from + k].send(d, port, "127.0.0.1", (e) => {
      if (!e) sent++
      resolve()
    }))
  ))
  return { sent }
}

process.on("message", (m) => {
  const job = m.init !== undefined ? init(m.init) : send(m.send)
  job.then((r) => process.send(r), (e) => process.send({ error: String(e?.stack ?? e) }))
})
process.on("disconnect", () => process.exit(0))
