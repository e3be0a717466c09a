// Checks bench/lib/noise.mjs against the published ChaChaPoly vectors; exits 1 on a mismatch.
// `node bench/lib/noise-check.mjs`; run.mjs runs it before trusting the baseline's figures.
import * as fs from "node:fs"
import { fileURLToPath } from "node:url"
import { keyPairFromPrivate, XX } from "./noise.mjs"

const file = fileURLToPath(new URL("../../test/fixtures/noise-xx.json", import.meta.url))
const hex = (s) => Buffer.from(s, "hex")

export const checkNoise = () => {
  const vectors = JSON.parse(fs.readFileSync(file, "utf8")).vectors.filter((v) =>
    v.protocol_name === "Noise_XX_25519_ChaChaPoly_SHA256"
  )
  if (vectors.length === 0) throw new Error("no ChaChaPoly vectors")
  for (const v of vectors) {
    const i = new XX({
      initiator: true,
      prologue: hex(v.init_prologue),
      s: keyPairFromPrivate(hex(v.init_static)),
      e: keyPairFromPrivate(hex(v.init_ephemeral))
    })
    const r = new XX({
      initiator: false,
      prologue: hex(v.resp_prologue),
      s: keyPairFromPrivate(hex(v.resp_static)),
      e: keyPairFromPrivate(hex(v.resp_ephemeral))
    })
    const m = v.messages
    const expect = (got, want, what) => {
      if (got.toString("hex") !== want) throw new Error(`${v.protocol_name}: ${what} differs`)
    }
    const c1 = i.write1(hex(m[0].payload))
    expect(c1, m[0].ciphertext, "message 1")
    expect(r.read1(c1), m[0].payload, "payload 1")
    const c2 = r.write2(hex(m[1].payload))
    expect(c2, m[1].ciphertext, "message 2")
    expect(i.read2(c2), m[1].payload, "payload 2")
    const c3 = i.write3(hex(m[2].payload))
    expect(c3, m[2].ciphertext, "message 3")
    expect(r.read3(c3), m[2].payload, "payload 3")
    if (v.handshake_hash) expect(i.h, v.handshake_hash, "handshake hash")
    const ti = i.split()
    const tr = r.split()
    for (let k = 3; k < m.length; k++) {
      const [from, to] = k % 2 === 0 ? [ti, tr] : [tr, ti] // 0 I, 1 R, 2 I, 3 R...
      const c = from.send.encrypt(Buffer.alloc(0), hex(m[k].payload))
      expect(c, m[k].ciphertext, `transport message ${k}`)
      expect(to.recv.decrypt(Buffer.alloc(0), c), m[k].payload, `transport payload ${k}`)
    }
  }
  return vectors.length
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  console.log(`noise.mjs: ${checkNoise()} ChaChaPoly vectors reproduced`)
}
