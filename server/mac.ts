import { BadRequestError } from './errors.js';

/** A MAC in swarmboot's one canonical form: lower-case, colon-separated ("aa:bb:cc:dd:ee:ff"). */
export type Mac = string & { readonly __mac: unique symbol };

const HEX12 = /^[0-9a-f]{12}$/;

/**
 * Accepts the forms operators and firmware use: aa:bb:cc:dd:ee:ff,
 * AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff (Cisco), aabbccddeeff, and iPXE's
 * `01-aa-bb-...` pxelinux form (hardware type 1 prefix). Returns null when
 * the text is not a MAC, so callers choose how to report it.
 */
export function parseMac(text: string): Mac | null {
  let s = text.trim().toLowerCase();
  if (/^01[-:]([0-9a-f]{2}[-:]){5}[0-9a-f]{2}$/.test(s)) s = s.slice(3);
  let hex: string;
  if (/^([0-9a-f]{2}[:-]){5}[0-9a-f]{2}$/.test(s)) {
    const sep = s[2];
    if (s.split('').filter((_, i) => i % 3 === 2).some((c) => c !== sep)) return null;
    hex = s.replace(/[:-]/g, '');
  } else if (/^[0-9a-f]{4}\.[0-9a-f]{4}\.[0-9a-f]{4}$/.test(s)) {
    hex = s.replace(/\./g, '');
  } else {
    hex = s;
  }
  if (!HEX12.test(hex)) return null;
  return hex.replace(/(..)(?!$)/g, '$1:') as Mac;
}

/** parseMac for caller input: throws a 400-class error naming the bad text. */
export function requireMac(text: string): Mac {
  const mac = parseMac(text);
  if (mac === null) throw new BadRequestError(`not a MAC address: ${JSON.stringify(text)}`);
  return mac;
}

/** "aa-bb-cc-dd-ee-ff": the form pxelinux, iPXE's ${mac:hexhyp} and file names use. */
export function macHyphen(mac: Mac): string {
  return mac.replace(/:/g, '-');
}

/** Six raw bytes, as DHCP's chaddr carries them. */
export function macFromBytes(bytes: Uint8Array): Mac {
  if (bytes.length < 6) throw new BadRequestError('hardware address shorter than 6 bytes');
  return Array.from(bytes.subarray(0, 6), (b) => b.toString(16).padStart(2, '0')).join(':') as Mac;
}
