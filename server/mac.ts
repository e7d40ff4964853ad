import { BadRequestError } from './errors.js';

/** A MAC in swarmboot's one canonical form: lower-case, colon-separated ("aa:bb:cc:dd:ee:ff"). */
export type Mac = string & { readonly __mac: unique symbol };

const HEX12 = /^[0-9a-f]{12}$/;

function isHexCode(c: number): boolean {
  return (c >= 48 && c <= 57) || (c >= 97 && c <= 102) || (c >= 65 && c <= 70);
}

/** The form nearly every caller sends (iPXE's ${mac:hexhyp}, DHCP-derived text): six hex pairs split by one kind of separator. No regex, no allocation but the result. */
function parseSeparated(s: string): Mac | null {
  if (s.length !== 17) return null;
  const sep = s.charCodeAt(2);
  if (sep !== 58 && sep !== 45) return null;
  for (let i = 0; i < 17; i++) {
    const c = s.charCodeAt(i);
    if (i % 3 === 2 ? c !== sep : !isHexCode(c)) return null;
  }
  const lower = s.toLowerCase();
  return (sep === 58 ? lower : lower.replaceAll('-', ':')) as Mac;
}

/**
 * Accepts the forms operators and firmware use: aa:bb:cc:dd:ee:ff,
 * AA-BB-CC-DD-EE-FF, aabb.ccdd.eeff (Cisco), aabbccddeeff, and iPXE's
 * `01-aa-bb-...` pxelinux form (hardware type 1 prefix). Returns null when
 * the text is not a MAC, so callers choose how to report it.
 */
export function parseMac(text: string): Mac | null {
  const quick = parseSeparated(text);
  if (quick !== null) return quick;
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
