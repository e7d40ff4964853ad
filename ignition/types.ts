/**
 * The subset of the Ignition 3.3.0 config spec swarmboot emits. Only the
 * fields we set are typed: a config built from these types passes
 * `ignition-validate` (Debian's ignition 2.14), which test/ignition checks.
 * Flatcar accepts 3.3.0 since release 3185; 3.4.0 would shut out older
 * releases for no feature we use.
 */

export const IGNITION_VERSION = '3.3.0';

export interface IgnitionConfig {
  readonly ignition: { readonly version: typeof IGNITION_VERSION };
  readonly passwd: { readonly users: readonly IgnitionUser[] };
  readonly storage: {
    readonly files: readonly IgnitionFile[];
    readonly links: readonly IgnitionLink[];
  };
  readonly systemd: { readonly units: readonly IgnitionUnit[] };
}

export interface IgnitionUser {
  readonly name: string;
  readonly sshAuthorizedKeys?: readonly string[];
}

export interface IgnitionFile {
  readonly path: string;
  /** Ignition's default is false, which fails the boot if the image already has the file. */
  readonly overwrite: boolean;
  /** Decimal, as JSON has no octal: 420 = 0644, 493 = 0755, 384 = 0600. */
  readonly mode: number;
  readonly contents: { readonly source: string };
}

export interface IgnitionLink {
  readonly path: string;
  readonly target: string;
  readonly hard: boolean;
  readonly overwrite?: boolean;
}

export interface IgnitionDropin {
  readonly name: string;
  readonly contents: string;
}

export interface IgnitionUnit {
  readonly name: string;
  readonly enabled?: boolean;
  readonly mask?: boolean;
  readonly contents?: string;
  readonly dropins?: readonly IgnitionDropin[];
}
