/**
 * `mailagent completion [bash|zsh]`: a shell completion script. The script asks the binary for
 * the candidates with yargs' own protocol (`mailagent --get-yargs-completions <words…>`), which
 * completes subcommands, their flags and positional choices (the `users` actions, …) from the
 * command list in cli.ts, without loading any command handler.
 *
 * yargs answers in zsh form (`name:description`) when $SHELL or $ZSH_NAME mentions zsh, and
 * chooses its script the same way. Both scripts here therefore set SHELL for that one call, so
 * a bash started from a zsh login (or the other way round) still gets answers it can read; they
 * are otherwise yargs 18's templates.
 */
import { basename } from 'node:path';
import { EXIT } from '../core/errors';

export const SHELLS = ['bash', 'zsh'] as const;
export type Shell = (typeof SHELLS)[number];

const BASH = `###-begin-mailagent-completions-###
#
# mailagent command completion script for bash
#
# Installation: mailagent completion bash >> ~/.bashrc
#    or: mailagent completion bash > /etc/bash_completion.d/mailagent
#
_mailagent_yargs_completions()
{
    local cur_word args type_list

    cur_word="\${COMP_WORDS[COMP_CWORD]}"
    args=("\${COMP_WORDS[@]}")

    # ask mailagent for the candidates (SHELL=bash: plain words, whatever the login shell)
    mapfile -t type_list < <(SHELL=bash mailagent --get-yargs-completions "\${args[@]}")
    mapfile -t COMPREPLY < <(compgen -W "$( printf '%q ' "\${type_list[@]}" )" -- "\${cur_word}" |
        awk '/ / { print "\\""$0"\\"" } /^[^ ]+$/ { print $0 }')

    # if no match was found, fall back to filename completion
    if [ \${#COMPREPLY[@]} -eq 0 ]; then
      COMPREPLY=()
    fi

    return 0
}
complete -o bashdefault -o default -F _mailagent_yargs_completions mailagent
###-end-mailagent-completions-###
`;

const ZSH = `#compdef mailagent
###-begin-mailagent-completions-###
#
# mailagent command completion script for zsh
#
# Installation: mailagent completion zsh >> ~/.zshrc (after compinit)
#    or: mailagent completion zsh > "\${fpath[1]}/_mailagent"
#
_mailagent_yargs_completions()
{
  local reply
  local si=$IFS
  # SHELL=zsh: candidates come as name:description
  IFS=$'\\n' reply=($(SHELL=zsh COMP_CWORD="$((CURRENT-1))" COMP_LINE="$BUFFER" COMP_POINT="$CURSOR" mailagent --get-yargs-completions "\${words[@]}"))
  IFS=$si
  if [[ \${#reply} -gt 0 ]]; then
    _describe 'values' reply
  else
    _default
  fi
}
if [[ "\${zsh_eval_context[-1]}" == "loadautofunc" ]]; then
  _mailagent_yargs_completions "$@"
else
  compdef _mailagent_yargs_completions mailagent
fi
###-end-mailagent-completions-###
`;

/** The shell named on the command line, else the login shell ($SHELL), else bash. */
export function chooseShell(given: string | undefined, env: NodeJS.ProcessEnv = process.env): Shell {
  if (given === 'bash' || given === 'zsh') return given;
  return basename(env.SHELL ?? '').includes('zsh') ? 'zsh' : 'bash';
}

export function completionScript(shell: Shell): string {
  return shell === 'zsh' ? ZSH : BASH;
}

export async function handler(argv: { shell?: string }): Promise<number> {
  process.stdout.write(completionScript(chooseShell(argv.shell)));
  return EXIT.OK;
}
