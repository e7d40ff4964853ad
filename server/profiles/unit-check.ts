/**
 * A light structural check of systemd unit text, so an obviously broken
 * unit is a profile error at load time rather than a blade that boots and
 * silently lacks a service. The full check (systemd-analyze verify) runs in
 * the test suite on rendered configs; this catches what an operator's typo
 * produces: text before the first [Section], a line that is neither a
 * section nor Key=Value, an enabled unit with nothing to enable it by.
 */
export function unitProblems(text: string, opts: { enabled: boolean; dropin?: boolean }): string[] {
  const problems: string[] = [];
  const sections = new Set<string>();
  let section: string | null = null;
  let continued = false;
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.trim();
    const wasContinued = continued;
    continued = line.endsWith('\\');
    if (wasContinued) return;
    if (line === '' || line.startsWith('#') || line.startsWith(';')) return;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = header[1] ?? '';
      sections.add(section);
      return;
    }
    if (section === null) {
      problems.push(`line ${i + 1} of the unit is outside any [Section]: ${JSON.stringify(raw)}`);
      return;
    }
    if (!/^[A-Za-z0-9_-]+\s*=/.test(line)) problems.push(`line ${i + 1} of the unit is not Key=Value: ${JSON.stringify(raw)}`);
  });
  if (!opts.dropin && problems.length === 0 && text.trim() !== '' && sections.size === 0) problems.push('the unit has no [Section] at all');
  if (opts.enabled && !opts.dropin && !sections.has('Install')) {
    problems.push('the unit is enabled but has no [Install] section (systemctl enable would fail; add e.g. WantedBy=multi-user.target)');
  }
  return problems;
}
