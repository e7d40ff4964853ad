/**
 * Option negotiation for a read request: RFC 2347 (OACK), 2348 (blksize),
 * 2349 (tsize, timeout), 7440 (windowsize). Pure: the request's options,
 * the file size and our limits in; the transfer parameters and the OACK's
 * options out.
 *
 * An option we cannot honour is left out of the OACK rather than refused
 * with error 8: RFC 2347 lets the server ignore options, and a boot must not
 * fail because firmware sent something odd. If nothing is accepted there is
 * no OACK and the transfer is plain RFC 1350 (512-byte blocks, lock-step).
 */
import type { TftpOption } from './packet.js';

export const BLKSIZE_MIN = 8;
export const BLKSIZE_MAX = 65464;
export const DEFAULT_BLKSIZE = 512;
export const WINDOWSIZE_MAX = 65535;

export interface NegotiationLimits {
  /** Largest blksize granted (firmware like QEMU's UEFI client mis-negotiates big blocks). */
  readonly blksizeCap: number;
  /** Largest windowsize granted; bounds the per-transfer send buffer (windowsize x blksize). */
  readonly windowsizeCap: number;
}

export interface Negotiated {
  readonly blksize: number;
  readonly windowsize: number;
  /** The client's RFC 2349 retransmit timeout, when it asked for one we accepted. */
  readonly timeoutMs: number | null;
  /** Options for the OACK, in the client's order and spelling; null means send no OACK. */
  readonly oack: readonly TftpOption[] | null;
  /** Options left out, with why (for the log). */
  readonly ignored: readonly string[];
}

/** A plain decimal number; RFC 2347 values are ASCII digits. */
function decimal(value: string): number | null {
  return /^[0-9]{1,12}$/.test(value) ? Number(value) : null;
}

function clamp(n: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, n));
}

export function negotiate(options: readonly TftpOption[], size: number, limits: NegotiationLimits): Negotiated {
  const blksizeCap = clamp(Math.floor(limits.blksizeCap), BLKSIZE_MIN, BLKSIZE_MAX);
  const windowsizeCap = clamp(Math.floor(limits.windowsizeCap), 1, WINDOWSIZE_MAX);
  let blksize = DEFAULT_BLKSIZE;
  let windowsize = 1;
  let timeoutMs: number | null = null;
  const oack: TftpOption[] = [];
  const ignored: string[] = [];
  const seen = new Set<string>();

  for (const { name, value } of options) {
    const key = name.toLowerCase();
    if (seen.has(key)) {
      ignored.push(`${name}: repeated (first one wins)`);
      continue;
    }
    seen.add(key);
    const n = decimal(value);
    switch (key) {
      case 'blksize':
        if (n === null || n < BLKSIZE_MIN) {
          ignored.push(`blksize: ${JSON.stringify(value)} is not a number >= ${BLKSIZE_MIN}`);
          break;
        }
        blksize = Math.min(n, BLKSIZE_MAX, blksizeCap);
        oack.push({ name, value: String(blksize) });
        break;
      case 'tsize':
        // RFC 2349: a reading client sends 0 and the server answers with the size.
        if (n === null) {
          ignored.push(`tsize: ${JSON.stringify(value)} is not a number`);
          break;
        }
        oack.push({ name, value: String(size) });
        break;
      case 'timeout':
        if (n === null || n < 1 || n > 255) {
          ignored.push(`timeout: ${JSON.stringify(value)} is not 1..255 seconds`);
          break;
        }
        timeoutMs = n * 1000;
        oack.push({ name, value: String(n) });
        break;
      case 'windowsize':
        if (n === null || n < 1) {
          ignored.push(`windowsize: ${JSON.stringify(value)} is not a number >= 1`);
          break;
        }
        windowsize = Math.min(n, WINDOWSIZE_MAX, windowsizeCap);
        oack.push({ name, value: String(windowsize) });
        break;
      default:
        ignored.push(`${name}: unknown option`);
    }
  }
  return { blksize, windowsize, timeoutMs, oack: oack.length > 0 ? oack : null, ignored };
}
