/** Problems listed in a reply; the rest are counted. One hostile mail must not make a huge reply. */
export const MAX_LISTED_PROBLEMS = 20;

/** "- problem" lines, at most MAX_LISTED_PROBLEMS, then "- … and N more problems". */
export function problemList(problems: string[]): string {
  const listed = problems.slice(0, MAX_LISTED_PROBLEMS).map((p) => `- ${p}`);
  const more = problems.length - listed.length;
  return [...listed, ...(more > 0 ? [`- … and ${more} more problem${more === 1 ? '' : 's'}`] : [])].join('\n');
}
