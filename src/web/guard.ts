/**
 * What every request to the web UI must pass before anything else (docs/web.md "Security"):
 * the Host header names this server (no DNS rebinding), an Origin, when sent, is the page's
 * own (no cross-site requests), and the token is given, in the URL once and then in an
 * HttpOnly, SameSite=Strict cookie. Pure functions: the server (Web.ts) applies them.
 */
import { timingSafeEqual } from "node:crypto"
import * as os from "node:os"

/**
 * The cookie that carries the token after the first request. Its name holds the port:
 * browsers keep cookies per host, not per port, so two nodes' pages on one host would
 * otherwise overwrite each other's token.
 */
export const cookieName = (port: string | number): string => `p2pchat_web_${port}`

/**
 * The Content-Security-Policy of every response: scripts, styles and connections from this
 * server only, no inline script or style, no frames, no forms, nothing from the internet.
 */
export const CSP = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'"
].join("; ")

/** The headers every response carries. */
export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  "content-security-policy": CSP,
  "x-content-type-options": "nosniff",
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
  "cache-control": "no-store"
}

/** Whether `address` is an IPv4 loopback address (127.0.0.0/8). */
export const isLoopback = (address: string): boolean => /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(address)

/** A dotted IPv4 address, each part 0-255. */
export const isIpv4 = (address: string): boolean =>
  /^\d{1,3}(\.\d{1,3}){3}$/.test(address) && address.split(".").every((p) => Number(p) <= 255)

/**
 * The `host:port` values the Host header may carry: the bound address, `localhost`, and, for
 * a server bound to every interface (0.0.0.0), each address of this machine.
 */
export const allowedHosts = (bound: string, port: number): ReadonlySet<string> => {
  const names = new Set([bound, "localhost"])
  if (bound === "0.0.0.0") {
    names.add("127.0.0.1")
    for (const infos of Object.values(os.networkInterfaces())) {
      for (const info of infos ?? []) if (info.family === "IPv4") names.add(info.address)
    }
  }
  return new Set([...names].map((n) => `${n}:${port}`))
}

/** The token and the cookie compared in constant time. */
export const sameToken = (given: string | undefined, token: string): boolean => {
  if (given === undefined) return false
  const a = Buffer.from(given, "utf8")
  const b = Buffer.from(token, "utf8")
  return a.length === b.length && timingSafeEqual(a, b)
}

/** The value of one cookie in a Cookie header. */
export const cookieOf = (header: string | undefined, name: string): string | undefined => {
  if (header === undefined) return undefined
  for (const part of header.split(";")) {
    const eq = part.indexOf("=")
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim()
  }
  return undefined
}

/** The Set-Cookie header that keeps the token in the browser for this server. */
export const tokenCookie = (token: string, port: string | number): string =>
  `${cookieName(port)}=${token}; Path=/; HttpOnly; SameSite=Strict`

export interface Verdict {
  readonly status: 200 | 401 | 403
  readonly reason: string
  /** The token came in the URL: the answer sets the cookie (and the page drops it from its URL). */
  readonly fromUrl: boolean
  /** With fromUrl: the Set-Cookie header's value. */
  readonly setCookie?: string
}

export interface Checked {
  readonly method: string
  readonly headers: Readonly<Record<string, string | undefined>>
  /** The token in the URL's query, if any. */
  readonly urlToken: string | undefined
}

/**
 * Judges one request: 403 for a Host that is not this server's or an Origin that is not the
 * page's own (or a browser saying the request is cross-site); 401 without the token; a
 * request that changes something (not GET or HEAD) must also carry its Origin.
 */
export const judge = (request: Checked, hosts: ReadonlySet<string>, token: string): Verdict => {
  const deny = (status: 401 | 403, reason: string): Verdict => ({ status, reason, fromUrl: false })
  const host = request.headers["host"]
  if (host === undefined || !hosts.has(host.toLowerCase())) return deny(403, "this server does not answer to that Host")
  const origin = request.headers["origin"]
  if (origin !== undefined && origin !== `http://${host.toLowerCase()}`) return deny(403, "cross-origin requests are refused")
  if (request.headers["sec-fetch-site"] === "cross-site") return deny(403, "cross-site requests are refused")
  const reads = request.method === "GET" || request.method === "HEAD"
  if (!reads && origin === undefined) return deny(403, "a request that changes something must carry its Origin")
  // the Host is one of ours, so it ends with our port
  const port = host.slice(host.lastIndexOf(":") + 1)
  if (sameToken(cookieOf(request.headers["cookie"], cookieName(port)), token)) return { status: 200, reason: "", fromUrl: false }
  if (sameToken(request.urlToken, token)) return { status: 200, reason: "", fromUrl: true, setCookie: tokenCookie(token, port) }
  return deny(401, "open the address with its token, as `p2pchat start --web` printed it")
}
