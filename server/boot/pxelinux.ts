/**
 * pxelinux configs (the 2017 seed's boot path, for BIOS blades whose
 * firmware should not be chained to iPXE). Paths are relative to the TFTP
 * root, which is the assets dir, where pxelinux.0 also lives.
 */
import { ConfigError, SwarmbootError } from '../errors.js';
import type { RenderContext } from '../profiles/types.js';
import { kernelCommandLine } from './cmdline.js';
import { flatcarInitrdPath, flatcarKernelPath, tftpOemPath } from './layout.js';

/** Served as pxelinux.cfg/01-<mac> for one machine. */
export function renderPxelinuxConfig(ctx: RenderContext): string {
  const { machine, profile } = ctx;
  // pxelinux is a BIOS (x86) loader: an arm64 image would be loaded and die without a message.
  if (profile.flatcar.arch !== 'amd64') {
    throw new ConfigError([], `profile ${profile.name} (${profile.source.file}:${profile.source.line}): pxelinux boots only amd64 images, not ${profile.flatcar.arch}; use boot: ipxe`);
  }
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x1f\x7f]/.test(machine.hostname + profile.name)) {
    throw new SwarmbootError('E_RENDER', 500, `hostname or profile name of ${machine.mac} contains a control character`);
  }
  const initrds = [flatcarInitrdPath(profile.flatcar)];
  if (profile.ignition === 'oem') initrds.push(tftpOemPath(machine.mac));
  const lines = [
    `# swarmboot: ${machine.hostname} (${machine.mac}) profile ${profile.name}`,
    'default flatcar',
    'prompt 0',
    'timeout 1',
    'label flatcar',
    `  kernel ${flatcarKernelPath(profile.flatcar)}`,
    // pxelinux loads these in order and adds "initrd=<this list>" to the command line itself.
    `  initrd ${initrds.join(',')}`,
    `  append ${kernelCommandLine(ctx, 'pxelinux').join(' ')}`,
  ];
  return lines.join('\n') + '\n';
}

/**
 * pxelinux.cfg/default, reached only by a machine with no per-MAC file:
 * boot nothing from the network (an unknown machine may have a disk worth
 * keeping), say why, and hand back to the BIOS's next boot device.
 */
export function renderPxelinuxDefault(): string {
  const lines = [
    '# swarmboot: fallback for machines without a per-MAC config (pxelinux.cfg/01-<mac>)',
    'default local',
    'prompt 0',
    'timeout 1',
    // Each say line stays under 80 columns: it prints on the VGA console only.
    'say swarmboot: this MAC is not known to swarmboot, or it does not use pxelinux',
    'say swarmboot: booting from the local disk instead',
    'label local',
    '  localboot 0',
  ];
  return lines.join('\n') + '\n';
}
