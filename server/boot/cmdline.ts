/**
 * The kernel command line, shared by the iPXE and pxelinux renderers so the
 * two boot paths cannot disagree on what a machine boots with.
 */
import { ConfigError } from '../errors.js';
import type { BootMethod, RenderContext } from '../profiles/types.js';
import { kernelArgProblem } from './kernel-args.js';
import { endpoints, FLATCAR_INITRD, OEM_CONFIG_PATH, OEM_INITRD } from './layout.js';

/** x86 and arm64 COMMAND_LINE_SIZE (including the NUL); the kernel truncates longer lines without a word. */
export const KERNEL_COMMAND_LINE_MAX = 2048;
/**
 * Room left for what the loader adds: iPXE's EFI loader prepends the image
 * name, pxelinux adds BOOT_IMAGE=<path> and initrd=<list> (both seen in QEMU).
 */
const LOADER_MARGIN = 256;

const OEM_DIR = 'usr/share/oem/';

/**
 * Returns null when `url` can be pasted into an iPXE script and a kernel
 * line, else why not. It ends up unquoted in both, split on whitespace, and
 * iPXE expands ${...} and reads || and && as operators.
 */
export function serverUrlProblem(url: string): string | null {
  if (!/^https?:\/\/[^/]/.test(url)) return `server URL ${JSON.stringify(url)} must start with http:// or https:// and a host`;
  // eslint-disable-next-line no-control-regex
  if (/[\s\x00-\x1f\x7f]/.test(url)) return `server URL ${JSON.stringify(url)} contains whitespace or a control character`;
  if (/["'`\\<>]/.test(url)) return `server URL ${JSON.stringify(url)} contains a quote, backslash or angle bracket`;
  if (/[$#|&]/.test(url)) return `server URL ${JSON.stringify(url)} contains "$", "#", "|" or "&", which iPXE would interpret`;
  if (url.endsWith('/')) return `server URL ${JSON.stringify(url)} must not end with "/"`;
  return null;
}

/** The server URL, or a ConfigError saying why it cannot be used on a boot line. */
export function requireServerUrl(url: string): string {
  const problem = serverUrlProblem(url);
  if (problem !== null) throw new ConfigError([], `${problem} (set the cluster's server_url)`);
  return url;
}

function checkOperatorArgs(args: readonly string[], where: string): void {
  for (const arg of args) {
    const problem = kernelArgProblem(arg);
    if (problem !== null) throw new ConfigError([], `${where}: ${problem}`);
  }
}

/**
 * Arguments in order: initrd names (iPXE only: UEFI's kernel stub needs
 * them; pxelinux adds its own from its `initrd` line), flatcar.first_boot,
 * where Ignition comes from, then the cluster's and the profile's own.
 */
export function kernelCommandLine(ctx: RenderContext, method: BootMethod): string[] {
  const { profile, cluster, machine } = ctx;
  const oem = profile.ignition === 'oem';
  const args: string[] = [];
  if (method === 'ipxe') {
    args.push(`initrd=${FLATCAR_INITRD}`);
    if (oem) args.push(`initrd=${OEM_INITRD}`);
  }
  // A diskless root is new on every boot, so Ignition must run every time.
  args.push('flatcar.first_boot=1');
  if (oem) {
    // Flatcar would find the embedded config without it, but naming it makes
    // the source obvious on the console and beats any stale URL default.
    args.push(`ignition.config.url=oem:///${OEM_CONFIG_PATH.slice(OEM_DIR.length)}`);
  } else {
    args.push(`ignition.config.url=${requireServerUrl(ctx.serverUrl)}${endpoints.ignition(machine.mac)}`);
  }
  checkOperatorArgs(cluster.kernelArgs, `cluster ${cluster.name} kernel_args`);
  checkOperatorArgs(profile.kernelArgs, `profile ${profile.name} (${profile.source.file}:${profile.source.line}) kernel_args`);
  args.push(...cluster.kernelArgs, ...profile.kernelArgs);
  const length = Buffer.byteLength(args.join(' '), 'utf8');
  if (length > KERNEL_COMMAND_LINE_MAX - 1 - LOADER_MARGIN) {
    throw new ConfigError(
      [],
      `kernel command line for ${machine.hostname} (${machine.mac}) is ${length} bytes; the kernel keeps only ${KERNEL_COMMAND_LINE_MAX - 1}, and the boot loader needs ${LOADER_MARGIN} of those`,
    );
  }
  return args;
}
