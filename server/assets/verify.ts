/**
 * Proof that a release file is Flatcar's: a detached OpenPGP signature
 * checked with OpenPGP.js (no gpg, no keyring), against a key that is pinned
 * by fingerprint, plus the SHA-512 from DIGESTS. Files are streamed, never
 * read whole: a PXE initrd is hundreds of MB.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as openpgp from 'openpgp';
import { AssetError } from './errors.js';
import { pinMatches, type KeyPin } from './release.js';

export interface SigningKey {
  readonly key: openpgp.PublicKey;
  /** Primary key fingerprint, upper-case hex. */
  readonly fingerprint: string;
  readonly pin: KeyPin;
  /** Where it was read from (file or URL), for messages. */
  readonly source: string;
}

export interface SignatureCheck {
  /** Key id (hex, upper case) of the (sub)key that made the signature. */
  readonly signer: string;
  readonly created: Date | null;
}

function upper(fpr: string): string {
  return fpr.toUpperCase();
}

function isArmored(bytes: Uint8Array, kind: 'PUBLIC KEY BLOCK' | 'SIGNATURE' | 'PRIVATE KEY BLOCK'): boolean {
  const head = Buffer.from(bytes.subarray(0, 256)).toString('latin1').trimStart();
  return head.startsWith(`-----BEGIN PGP ${kind}-----`);
}

/** Every fingerprint of a certificate: the primary key's, then its subkeys'. */
export function fingerprintsOf(key: openpgp.Key): string[] {
  return [upper(key.getFingerprint()), ...key.getSubkeys().map((s) => upper(s.getFingerprint()))];
}

/**
 * Reads an OpenPGP certificate (armored or binary; a file may hold several)
 * and keeps the one the pin names. Any key of a certificate may be named
 * (Flatcar signs with yearly subkeys under one primary key); signatures are
 * then accepted from that certificate's keys only.
 */
export async function readSigningKey(bytes: Uint8Array, pin: KeyPin, source: string): Promise<SigningKey> {
  let keys: openpgp.Key[];
  try {
    keys = isArmored(bytes, 'PUBLIC KEY BLOCK') || isArmored(bytes, 'PRIVATE KEY BLOCK')
      ? await openpgp.readKeys({ armoredKeys: Buffer.from(bytes).toString('utf8') })
      : await openpgp.readKeys({ binaryKeys: bytes });
  } catch (err) {
    throw new AssetError('E_ASSET_KEY', `the signing key from ${source} is not an OpenPGP key: ${(err as Error).message}`);
  }
  const matching = keys.filter((k) => fingerprintsOf(k).some((f) => pinMatches(pin, f)));
  const first = matching[0];
  if (first === undefined) {
    const seen = keys.map((k) => fingerprintsOf(k).join(' + ')).join('; ');
    throw new AssetError('E_ASSET_KEY', `the signing key from ${source} does not match the pinned ${pin.kind} ${pin.hex} (it holds ${seen}); if the key rotated, check the new fingerprint out of band and pass --fingerprint`);
  }
  if (matching.length > 1) throw new AssetError('E_ASSET_KEY', `${source} holds ${matching.length} keys matching ${pin.hex}; pin a full fingerprint`);
  const key = first.isPrivate() ? first.toPublic() : (first as openpgp.PublicKey);
  return { key, fingerprint: upper(key.getFingerprint()), pin, source };
}

async function readSignature(sig: Uint8Array, what: string): Promise<openpgp.Signature> {
  try {
    return isArmored(sig, 'SIGNATURE')
      ? await openpgp.readSignature({ armoredSignature: Buffer.from(sig).toString('utf8') })
      : await openpgp.readSignature({ binarySignature: sig });
  } catch (err) {
    throw new AssetError('E_ASSET_SIGNATURE', `${what}: the .sig is not an OpenPGP signature (${(err as Error).message})`);
  }
}

/**
 * Verifies a detached signature (binary, as Flatcar publishes, or armored)
 * over the file at `path`. Throws E_ASSET_UNTRUSTED_SIGNER when the signature
 * names a key outside the pinned certificate, E_ASSET_SIGNATURE when it does
 * not verify (the file or the signature was altered).
 */
export async function verifyDetached(path: string, sig: Uint8Array, signing: SigningKey, what: string): Promise<SignatureCheck> {
  const signature = await readSignature(sig, what);
  const ids = signature.getSigningKeyIDs();
  const ours = ids.filter((id) => signing.key.getKeys(id).length > 0);
  if (ours.length === 0) {
    const named = ids.map((id) => id.toHex().toUpperCase()).join(', ') || 'no key';
    throw new AssetError('E_ASSET_UNTRUSTED_SIGNER', `${what}: signed by ${named}, which is not part of the pinned signing key ${signing.fingerprint} (from ${signing.source})`);
  }
  const message = await openpgp.createMessage({ binary: Readable.toWeb(createReadStream(path)) as ReadableStream<Uint8Array> });
  try {
    const result = await openpgp.verify({ message, signature, verificationKeys: signing.key, format: 'binary', expectSigned: true });
    // The signature is only checked once the data has been read through.
    const reader = result.data.getReader();
    for (;;) if ((await reader.read()).done) break;
    const good = result.signatures.find((s) => ours.some((id) => id.equals(s.keyID)));
    if (good === undefined) throw new Error('no signature by the pinned key');
    await good.verified;
    const packet = (await good.signature).packets[0];
    return { signer: good.keyID.toHex().toUpperCase(), created: packet?.created ?? null };
  } catch (err) {
    if (err instanceof AssetError) throw err;
    throw new AssetError('E_ASSET_SIGNATURE', `${what}: BAD signature (${(err as Error).message}); the file or its .sig was altered`);
  }
}

/** SHA-512 of a file, lower-case hex. */
export async function sha512File(path: string): Promise<string> {
  const hash = createHash('sha512');
  await pipeline(createReadStream(path, { highWaterMark: 1024 * 1024 }), hash);
  return hash.digest('hex');
}
