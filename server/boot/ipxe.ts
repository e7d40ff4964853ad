/**
 * iPXE scripts. Pure text renderers: the HTTP layer serves them, the boot
 * service decides who gets which. Every command that can fail jumps to one
 * handler that says so on the console and retries the whole boot, since a
 * blade with a half-loaded kernel can do nothing else useful.
 */
import { parseMac, type Mac } from '../mac.js';
import type { RenderContext } from '../profiles/types.js';
import { SwarmbootError } from '../errors.js';
import { kernelCommandLine, requireServerUrl } from './cmdline.js';
import { endpoints, FLATCAR_INITRD, flatcarInitrdPath, flatcarKernelPath, OEM_INITRD } from './layout.js';

/** Seconds a failed boot shows its error before rebooting, so an operator at the console can read it. */
const FAIL_PAUSE = 30;
const RETRY_PAUSE = 10;

/** Names end up in comment lines; a line break there would start a command. */
function oneLine(what: string, text: string): string {
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(text)) throw new SwarmbootError('E_RENDER', 500, `${what} ${JSON.stringify(text)} contains a control character`);
  return text;
}

/** The per-machine script served at endpoints.ipxe(mac). */
export function renderIpxeScript(ctx: RenderContext): string {
  const { machine, profile } = ctx;
  const base = requireServerUrl(ctx.serverUrl);
  const args = kernelCommandLine(ctx, 'ipxe');
  const lines = [
    '#!ipxe',
    `# swarmboot: ${oneLine('hostname', machine.hostname)} (${machine.mac}) profile ${oneLine('profile', profile.name)} role ${profile.role}`,
    `set base ${base}`,
    `kernel \${base}${endpoints.asset(flatcarKernelPath(profile.flatcar))} ${args.join(' ')} || goto failed`,
    `initrd --name ${FLATCAR_INITRD} \${base}${endpoints.asset(flatcarInitrdPath(profile.flatcar))} || goto failed`,
  ];
  if (profile.ignition === 'oem') {
    lines.push(`initrd --name ${OEM_INITRD} \${base}${endpoints.oem(machine.mac)} || goto failed`);
  }
  lines.push(
    'boot || goto failed',
    '',
    ':failed',
    `echo swarmboot: booting ${machine.mac} from \${base} failed, see the error above`,
    `echo swarmboot: rebooting in ${FAIL_PAUSE} s`,
    `sleep ${FAIL_PAUSE}`,
    // Builds without the reboot command fall back to the firmware's next boot entry.
    'reboot || exit 1',
  );
  return lines.join('\n') + '\n';
}

const SAMPLE_MAC = parseMac('00:00:00:00:00:00') as Mac;

/**
 * The MAC of the NIC iPXE booted from, in the form endpoints.ipxe() uses.
 * netX is the last opened device, i.e. the one that got the DHCP offer;
 * net0 would be wrong on a multi-port blade that booted from a later port.
 */
const IPXE_MAC_HEXHYP = '${netX/mac:hexhyp}';

/**
 * The generic entry point (GET /boot.ipxe) any stock iPXE can chain to: it
 * asks for this machine's own script by MAC. An unknown MAC gets a 404;
 * say so, try once more (the operator may just be adding it), then hand
 * back to the firmware rather than loop forever.
 */
export function renderBootScript(serverUrl: string): string {
  const base = requireServerUrl(serverUrl);
  // Built from endpoints.ipxe so this URL and the route cannot drift apart.
  const sample = endpoints.ipxe(SAMPLE_MAC);
  const path = sample.replace('00-00-00-00-00-00', IPXE_MAC_HEXHYP);
  if (path === sample) throw new SwarmbootError('E_RENDER', 500, `endpoints.ipxe() no longer carries the MAC in hyphen form: ${sample}`);
  const chain = `chain \${base}${path}`;
  const lines = [
    '#!ipxe',
    '# swarmboot: generic entry script, fetches the script for this machine by MAC',
    `set base ${base}`,
    `${chain} || goto retry`,
    '',
    ':retry',
    'echo swarmboot: no boot script for ${netX/mac} from ${base}: unknown MAC or server unreachable',
    `echo swarmboot: retrying in ${RETRY_PAUSE} s`,
    `sleep ${RETRY_PAUSE}`,
    `${chain} || goto failed`,
    '',
    ':failed',
    'echo swarmboot: giving up on ${netX/mac}: add it to a profile or check the server',
    `echo swarmboot: returning to the firmware in ${RETRY_PAUSE} s`,
    `sleep ${RETRY_PAUSE}`,
    'exit 1',
  ];
  return lines.join('\n') + '\n';
}
