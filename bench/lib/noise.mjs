// A minimal Noise_XX_25519_ChaChaPoly_SHA256 (revision 34) on node:crypto, for the baseline
// server and the benchmark clients. No framework, no dependency on p2pchat's code: it is
// checked against the published vectors in test/fixtures/noise-xx.json (bench/lib/noise-check.mjs).
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync
} from "node:crypto"

// Keys go in and out of node:crypto as JWK: with OpenSSL 3, importing a DER (SPKI) public
// key costs about 140 us and exporting one about 80 us; JWK costs 9 us and 1 us.
const PKCS8_PREFIX = Buffer.from("302e020100300506032b656e04220420", "hex")
const NAME = "Noise_XX_25519_ChaChaPoly_SHA256"
const EMPTY = Buffer.alloc(0)

/** A key pair as raw bytes plus the KeyObject of the private key (made once). */
export const keyPairFromPrivate = (priv) => {
  const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, priv]), format: "der", type: "pkcs8" })
  const pub = Buffer.from(privateKey.export({ format: "jwk" }).x, "base64url")
  return { pub, privateKey }
}

// The public key comes out as JWK from generateKeyPairSync itself: exporting a generated
// KeyObject as JWK afterwards can deadlock Node 20 in garbage collection.
export const generateKeyPair = () => {
  const { privateKey, publicKey } = generateKeyPairSync("x25519", { publicKeyEncoding: { format: "jwk" } })
  return { pub: Buffer.from(publicKey.x, "base64url"), privateKey }
}

const dh = (kp, pub) =>
  diffieHellman({
    privateKey: kp.privateKey,
    publicKey: createPublicKey({ key: { kty: "OKP", crv: "X25519", x: pub.toString("base64url") }, format: "jwk" })
  })

const sha256 = (...parts) => {
  const h = createHash("sha256")
  for (const p of parts) h.update(p)
  return h.digest()
}
const hmac = (key, ...parts) => {
  const h = createHmac("sha256", key)
  for (const p of parts) h.update(p)
  return h.digest()
}
const hkdf2 = (ck, ikm) => {
  const t = hmac(ck, ikm)
  const o1 = hmac(t, Buffer.from([1]))
  return [o1, hmac(t, o1, Buffer.from([2]))]
}

/** CipherState: key and a counter nonce (4 zero bytes, then 64-bit little-endian). */
export class Cipher {
  constructor(key) {
    this.key = key
    this.n = 0
    this.nonce = Buffer.alloc(12)
  }
  #nonce() {
    this.nonce.writeUInt32LE(this.n >>> 0, 4)
    this.nonce.writeUInt32LE(Math.floor(this.n / 2 ** 32), 8)
    return this.nonce
  }
  encrypt(ad, plaintext) {
    if (this.key === undefined) return plaintext
    const c = createCipheriv("chacha20-poly1305", this.key, this.#nonce(), { authTagLength: 16 })
    if (ad.length > 0) c.setAAD(ad, { plaintextLength: plaintext.length })
    const body = c.update(plaintext)
    c.final()
    this.n++
    return Buffer.concat([body, c.getAuthTag()])
  }
  decrypt(ad, ciphertext) {
    if (this.key === undefined) return ciphertext
    const d = createDecipheriv("chacha20-poly1305", this.key, this.#nonce(), { authTagLength: 16 })
    d.setAuthTag(ciphertext.subarray(ciphertext.length - 16))
    if (ad.length > 0) d.setAAD(ad, { plaintextLength: ciphertext.length - 16 })
    const out = d.update(ciphertext.subarray(0, ciphertext.length - 16))
    d.final() // throws on a bad tag
    this.n++
    return out
  }
}

/**
 * One XX handshake. Initiator: write1, read2, write3. Responder: read1, write2, read3.
 * Then `split()` gives { send, recv } ciphers.
 */
export class XX {
  constructor({ initiator, prologue, s, e }) {
    this.initiator = initiator
    this.s = s
    this.e = e // tests only
    this.h = Buffer.alloc(32)
    Buffer.from(NAME).copy(this.h) // the name is exactly 32 bytes: used as is
    this.ck = this.h
    this.cs = new Cipher(undefined)
    this.mixHash(prologue)
  }
  mixHash(data) {
    this.h = sha256(this.h, data)
  }
  mixKey(ikm) {
    const [ck, k] = hkdf2(this.ck, ikm)
    this.ck = ck
    this.cs = new Cipher(k)
  }
  encryptAndHash(p) {
    const c = this.cs.encrypt(this.h, p)
    this.mixHash(c)
    return c
  }
  decryptAndHash(c) {
    const p = this.cs.decrypt(this.h, c)
    this.mixHash(c)
    return p
  }
  #newEphemeral() {
    this.e ??= generateKeyPair()
    this.mixHash(this.e.pub)
    return this.e.pub
  }
  // -> e
  write1(payload = EMPTY) {
    const e = this.#newEphemeral()
    return Buffer.concat([e, this.encryptAndHash(payload)])
  }
  read1(m) {
    this.re = Buffer.from(m.subarray(0, 32))
    this.mixHash(this.re)
    return this.decryptAndHash(m.subarray(32))
  }
  // <- e, ee, s, es
  write2(payload = EMPTY) {
    const e = this.#newEphemeral()
    this.mixKey(dh(this.e, this.re))
    const s = this.encryptAndHash(this.s.pub)
    this.mixKey(dh(this.s, this.re))
    return Buffer.concat([e, s, this.encryptAndHash(payload)])
  }
  read2(m) {
    this.re = Buffer.from(m.subarray(0, 32))
    this.mixHash(this.re)
    this.mixKey(dh(this.e, this.re))
    this.rs = this.decryptAndHash(m.subarray(32, 80))
    this.mixKey(dh(this.e, this.rs))
    return this.decryptAndHash(m.subarray(80))
  }
  // -> s, se
  write3(payload = EMPTY) {
    const s = this.encryptAndHash(this.s.pub)
    this.mixKey(dh(this.s, this.re))
    return Buffer.concat([s, this.encryptAndHash(payload)])
  }
  read3(m) {
    this.rs = this.decryptAndHash(m.subarray(0, 48))
    this.mixKey(dh(this.e, this.rs))
    return this.decryptAndHash(m.subarray(48))
  }
  split() {
    const [k1, k2] = hkdf2(this.ck, EMPTY)
    const c1 = new Cipher(k1)
    const c2 = new Cipher(k2)
    return this.initiator ? { send: c1, recv: c2 } : { send: c2, recv: c1 }
  }
}

export const PROLOGUE = Buffer.from("p2pchat/1")
