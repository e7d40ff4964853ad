/**
 * Why a fetch failed, one code per cause, so the CLI (and a script around
 * it) can tell "the release has no PXE files" from "someone tampered with
 * the kernel". Every one of them leaves the previously installed assets as
 * they were; only a cut download leaves something behind (its `.part`), on
 * purpose, so the next run resumes it.
 */
import { SwarmbootError } from '../errors.js';

export type AssetErrorCode =
  /** The release server answered 404 (no such version, or a release without PXE files). */
  | 'E_ASSET_NOT_FOUND'
  /** Any other HTTP status, a refused connection, a timeout. */
  | 'E_ASSET_HTTP'
  /** The body ended before its announced length; the `.part` is kept for resuming. */
  | 'E_ASSET_TRUNCATED'
  /** The `.sig` next to a payload is missing (404). */
  | 'E_ASSET_SIGNATURE_MISSING'
  /** The signature does not verify against the payload (tampered file or signature). */
  | 'E_ASSET_SIGNATURE'
  /** The signature verifies cryptographically only with some other key: not made by the pinned key. */
  | 'E_ASSET_UNTRUSTED_SIGNER'
  /** DIGESTS missing or without a SHA-512 line for the file. */
  | 'E_ASSET_DIGEST_MISSING'
  /** The SHA-512 of the downloaded file differs from DIGESTS. */
  | 'E_ASSET_DIGEST'
  /** The signing key cannot be read, or none of its fingerprints matches the pin. */
  | 'E_ASSET_KEY'
  /** version.txt is unreadable or names something that is not X.Y.Z. */
  | 'E_ASSET_VERSION'
  /** Another fetch holds the lock on this version directory. */
  | 'E_ASSET_BUSY';

export class AssetError extends SwarmbootError {
  declare readonly code: AssetErrorCode;
  constructor(code: AssetErrorCode, message: string) {
    // 502: these are failures of (or refusals of) what an upstream server sent.
    super(code, code === 'E_ASSET_BUSY' ? 409 : 502, message);
  }
}
