/**
 * Which callback URLs the worker will call, checked before a job is sent: the worker's own rules
 * (worker/addresses.py, worker/service/netguard.py), so a job never completes with its callback silently skipped.
 *
 *     https only              unless the worker runs with WHISPER_ALLOW_HTTP (local testing)
 *     public addresses only   never loopback, private, link-local (EC2 metadata), CGNAT, documentation, multicast or
 *                             reserved space, also when an IPv6 address embeds such an IPv4 one; unless the worker
 *                             runs with WHISPER_ALLOW_PRIVATE_URLS
 *     no user:password@       in the URL
 *
 * A host name is resolved here as the worker will resolve it; a name that resolves to a private address is refused,
 * one that does not resolve from here is let through (the worker, in another network, judges it again).
 */

import { lookup } from "node:dns/promises";
import { isIP } from "node:net";

import { InsecureCallbackUrl } from "./errors.js";

/** Opting out of the worker's callback rules, as the worker itself is told to (local receivers, tests). */
export interface CallbackPolicy {
  /** Accept `http://` callback URLs (the worker's WHISPER_ALLOW_HTTP). */
  http?: boolean | undefined;
  /** Accept loopback and private addresses (the worker's WHISPER_ALLOW_PRIVATE_URLS). */
  privateAddresses?: boolean | undefined;
}

/** `true` opts out of both rules; `false`/undefined keeps both. */
export type AllowInsecureCallbacks = boolean | CallbackPolicy;

export function callbackPolicy(allow: AllowInsecureCallbacks | undefined): Required<CallbackPolicy> {
  if (typeof allow === "object")
    return { http: allow.http === true, privateAddresses: allow.privateAddresses === true };
  return { http: allow === true, privateAddresses: allow === true };
}

const BLOCKED_V4: [number, number][] = [
  "0.0.0.0/8",
  "10.0.0.0/8",
  "100.64.0.0/10",
  "127.0.0.0/8",
  "169.254.0.0/16",
  "172.16.0.0/12",
  "192.0.0.0/24",
  "192.0.2.0/24",
  "192.88.99.0/24",
  "192.168.0.0/16",
  "198.18.0.0/15",
  "198.51.100.0/24",
  "203.0.113.0/24",
  "224.0.0.0/4",
  "240.0.0.0/4",
].map(cidr4);

const BLOCKED_V6: [bigint, number][] = [
  "::/96",
  "64:ff9b:1::/48",
  "100::/64",
  "2001::/23",
  "2001:db8::/32",
  "3fff::/20",
  "5f00::/16",
  "fc00::/7",
  "fe80::/10",
  "fec0::/10",
  "ff00::/8",
].map(cidr6);
const GLOBAL_UNICAST_V6 = cidr6("2000::/3");
const MAPPED_V4 = cidr6("::ffff:0:0/96");
const NAT64 = cidr6("64:ff9b::/96");
const SIX_TO_FOUR = cidr6("2002::/16");

function cidr4(text: string): [number, number] {
  const [address = "", bits = "32"] = text.split("/");
  return [v4(address), Number(bits)];
}

function cidr6(text: string): [bigint, number] {
  const [address = "", bits = "128"] = text.split("/");
  return [v6(address), Number(bits)];
}

function v4(address: string): number {
  return address.split(".").reduce((n, part) => n * 256 + Number(part), 0);
}

function v6(address: string): bigint {
  let text = address.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (dotted?.[1] !== undefined) {
    const n = v4(dotted[1]);
    text = `${text.slice(0, -dotted[1].length)}${(n >>> 16).toString(16)}:${(n & 0xffff).toString(16)}`;
  }
  const [head = "", tail] = text.split("::");
  const left = head ? head.split(":") : [];
  const right = tail ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(8 - left.length - right.length).fill("0"), ...right];
  return groups.reduce((n, group) => (n << 16n) + BigInt(Number.parseInt(group || "0", 16)), 0n);
}

function in4(n: number, [net, bits]: [number, number]): boolean {
  const size = 2 ** (32 - bits);
  return Math.floor(n / size) === Math.floor(net / size);
}

function in6(n: bigint, [net, bits]: [bigint, number]): boolean {
  const shift = BigInt(128 - bits);
  return n >> shift === net >> shift;
}

/** True only for globally routable unicast addresses, looking through IPv6 forms that embed an IPv4 one. */
export function isPublicAddress(address: string): boolean {
  const bare = address.replace(/^\[|\]$/g, "").split("%")[0] ?? "";
  const family = isIP(bare);
  if (family === 4) {
    const n = v4(bare);
    return !BLOCKED_V4.some((net) => in4(n, net));
  }
  if (family !== 6) return false;
  const n = v6(bare);
  let embedded: number | undefined;
  if (in6(n, MAPPED_V4) || in6(n, NAT64)) embedded = Number(n & 0xffffffffn);
  else if (in6(n, SIX_TO_FOUR)) embedded = Number((n >> 80n) & 0xffffffffn);
  if (embedded !== undefined)
    return isPublicAddress(`${embedded >>> 24}.${(embedded >>> 16) & 255}.${(embedded >>> 8) & 255}.${embedded & 255}`);
  return in6(n, GLOBAL_UNICAST_V6) && !BLOCKED_V6.some((net) => in6(n, net));
}

/** Why the worker would refuse to call `url` (without resolving a host name), or undefined. */
export function callbackUrlProblem(url: string, policy: Required<CallbackPolicy>): string | undefined {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return undefined; // the contract's own check names a malformed URL
  }
  const scheme = parsed.protocol.slice(0, -1);
  if (scheme === "http" && !policy.http)
    return "plain http:// callbacks are skipped by the worker: use https://, or pass allowInsecureCallbacks (and run the worker with WHISPER_ALLOW_HTTP) for a local receiver";
  if (parsed.username || parsed.password) return "URLs with credentials are not allowed";
  if (policy.privateAddresses) return undefined;
  const host = parsed.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const local = host === "localhost" || host.endsWith(".localhost");
  if (local || (isIP(host) !== 0 && !isPublicAddress(host)))
    return `${host} is not a public address, and the worker only calls public ones: pass allowInsecureCallbacks (and run the worker with WHISPER_ALLOW_PRIVATE_URLS) for a local receiver`;
  return undefined;
}

/** InsecureCallbackUrl unless the worker would call `url` (a host name is resolved, as the worker will). */
export async function checkCallbackUrl(
  url: string,
  policy: Required<CallbackPolicy>,
  field = "callback_url",
): Promise<void> {
  const problem = callbackUrlProblem(url, policy);
  if (problem !== undefined) throw new InsecureCallbackUrl(url, problem, field);
  if (policy.privateAddresses) return;
  let host: string;
  try {
    host = new URL(url).hostname;
  } catch {
    return;
  }
  if (isIP(host.replace(/^\[|\]$/g, "")) !== 0) return;
  let addresses: { address: string }[];
  try {
    addresses = await lookup(host, { all: true });
  } catch {
    return; // not resolvable from here; the worker resolves it in its own network
  }
  const hidden = addresses.find((a) => !isPublicAddress(a.address));
  if (hidden !== undefined)
    throw new InsecureCallbackUrl(
      url,
      `${host} resolves to ${hidden.address}, not a public address, and the worker only calls public ones: pass allowInsecureCallbacks (and run the worker with WHISPER_ALLOW_PRIVATE_URLS) for a local receiver`,
      field,
    );
}
