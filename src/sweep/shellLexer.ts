/**
 * A small POSIX sh lexer that says, for each placeholder of a command template, how the shell
 * will read the text put there — so the renderer can quote a value to arrive byte-exact as (part
 * of) one word, or the config can be refused where no quoting is safe.
 *
 * Safe places: an unquoted word (the value is single-quoted), inside '…' (each ' closes,
 * escapes and reopens), inside "…" (\ " $ ` are backslash-escaped), including either of these
 * inside `$(…)`. Refused: right after a backslash (it would escape the quoting's first
 * character), in a `#` comment (a newline in the value would end it), in a here-document's body
 * or delimiter (a line of the value could end it), inside `$'…'`, backticks, `${…}` and `$((…))`
 * (each re-reads the text by its own rules), and anywhere after a construct this lexer does not
 * follow with certainty (a `case` inside `$(…)`, quotes inside `${…}`).
 */

/** Where a placeholder sits in a shell command: outside quotes, inside '…' or inside "…". */
export type QuoteContext = "none" | "single" | "double";

/** What the shell does with the text at one placeholder: a quoting context, or why it is unsafe. */
export type PlaceholderVerdict = { context: QuoteContext } | { problem: string };

export interface ShellScan {
  /** One verdict per MARK in the scanned text, in order. */
  verdicts: PlaceholderVerdict[];
  /** The outermost quote or substitution left open at the end, with its index; null if none. */
  unclosed: { opener: string; index: number } | null;
}

/** Stands for a placeholder in the text given to `scanShell` (a NUL never reaches a shell). */
export const MARK = "\0";

type FrameKind = "single" | "double" | "ansi" | "backtick" | "param" | "arith" | "cmdsub";
interface Frame {
  kind: FrameKind;
  index: number;
  /** Open parentheses inside a `$(…)` or `$((…))`. */
  depth: number;
}

const OPENER: Record<FrameKind, string> = {
  single: "'",
  double: '"',
  ansi: "$'",
  backtick: "`",
  param: "${",
  arith: "$((",
  cmdsub: "$(",
};

/** Frames whose text the shell reads again by rules of its own: no placeholder inside them. */
const REREAD: Partial<Record<FrameKind, string>> = {
  ansi: "inside $'…', where backslash escapes are decoded",
  backtick: "inside backticks `…`, whose text the shell parses again (use $(…) instead)",
  // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
  param: "inside ${…}, whose text the shell expands by pattern rules",
  arith: "inside $((…)), which evaluates its text as arithmetic",
};

const WORD_BREAK = /[ \t\n;&|<>()]/;

/** Scans a command whose placeholders are replaced by MARK. */
export function scanShell(text: string): ShellScan {
  const verdicts: PlaceholderVerdict[] = [];
  const stack: Frame[] = [];
  const heredocs: Array<{ delimiter: string; stripTabs: boolean }> = [];
  let uncertain: string | null = null;
  let wordStart = true;
  const refuse = (problem: string): void => {
    verdicts.push({ problem });
  };
  const place = (context: QuoteContext): void => {
    const reread = stack.map((frame) => REREAD[frame.kind]).find((why) => why !== undefined);
    if (uncertain !== null) refuse(`after ${uncertain}, which labsweep cannot quote around with certainty`);
    else if (reread !== undefined) refuse(reread);
    else verdicts.push({ context });
  };
  const push = (kind: FrameKind, index: number): void => {
    stack.push({ kind, index, depth: 0 });
  };

  for (let i = 0; i < text.length; i++) {
    const char = text[i] as string;
    const top = stack[stack.length - 1];
    const kind = top?.kind ?? "none";

    if (kind === "single") {
      if (char === "'") stack.pop();
      else if (char === MARK) place("single");
      continue;
    }
    if (kind === "ansi" || kind === "backtick") {
      if (char === MARK) place("none");
      else if (char === "\\") {
        if (text[i + 1] === MARK) place("none");
        i++;
      } else if (char === (kind === "ansi" ? "'" : "`")) stack.pop();
      continue;
    }
    if (char === "\\") {
      // A backslash escapes the next character (in "…" only \ " $ ` and newline, but a
      // placeholder after it is refused either way: its quoting's first character would go).
      if (text[i + 1] === MARK) {
        refuse("right after a backslash, which would escape the first character of its quoting");
      }
      i++;
      wordStart = false;
      // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
      if (kind === "param") uncertain ??= "a backslash inside ${…}";
      continue;
    }
    if (kind === "double") {
      if (char === '"') stack.pop();
      else if (char === MARK) place("double");
      else if (char === "`") push("backtick", i);
      else if (char === "$") i = dollar(text, i, push);
      continue;
    }
    if (kind === "param") {
      if (char === "}") stack.pop();
      else if (char === MARK) place("none");
      else if (char === "'" || char === '"' || char === "`") {
        // Whether quotes inside ${…} quote depends on the shell and on the quotes around it.
        // biome-ignore lint/suspicious/noTemplateCurlyInString: shell syntax, not a JS template
        uncertain ??= "quotes inside ${…}";
      } else if (char === "$") i = dollar(text, i, push);
      continue;
    }
    if (kind === "arith") {
      const frame = top as Frame;
      if (char === MARK) place("none");
      else if (char === "(") frame.depth++;
      else if (char === ")") {
        if (frame.depth > 0) frame.depth--;
        else {
          stack.pop();
          if (text[i + 1] === ")") i++;
        }
      } else if (char === "$") i = dollar(text, i, push);
      continue;
    }

    // Unquoted text: the top level, or inside $(…).
    if (char === MARK) {
      place("none");
      wordStart = false;
    } else if (char === "'") {
      push("single", i);
      wordStart = false;
    } else if (char === '"') {
      push("double", i);
      wordStart = false;
    } else if (char === "`") {
      push("backtick", i);
      wordStart = false;
    } else if (char === "$") {
      if (text[i + 1] === "'") {
        push("ansi", i);
        i++;
      } else i = dollar(text, i, push);
      // Right inside a new $( the next word starts a command (`case` is looked for there).
      wordStart = stack[stack.length - 1]?.kind === "cmdsub" && stack[stack.length - 1] !== top;
    } else if (char === "#" && wordStart) {
      while (i + 1 < text.length && text[i + 1] !== "\n") {
        i++;
        if (text[i] === MARK) refuse("in a # comment, which a newline in the value would end");
      }
    } else if (char === "<" && text[i + 1] === "<" && text[i + 2] !== "<") {
      const stripTabs = text[i + 2] === "-";
      const read = readDelimiter(text, i + (stripTabs ? 3 : 2));
      if (read.marks > 0) for (let n = 0; n < read.marks; n++) refuse("in a here-document's delimiter");
      heredocs.push({ delimiter: read.delimiter, stripTabs });
      i = read.end - 1;
      wordStart = false;
    } else if (char === "\n" && heredocs.length > 0) {
      i = skipHeredocs(text, i + 1, heredocs.splice(0), refuse) - 1;
      wordStart = true;
    } else if (char === "(" && kind === "cmdsub") {
      (top as Frame).depth++;
      wordStart = true;
    } else if (char === ")" && kind === "cmdsub") {
      const frame = top as Frame;
      if (frame.depth > 0) {
        frame.depth--;
        wordStart = true;
      } else {
        stack.pop();
        wordStart = false;
      }
    } else {
      if (wordStart && kind === "cmdsub" && /^case[ \t\n]/.test(text.slice(i, i + 5)))
        uncertain ??= "a case statement inside $(…) (its patterns end in unmatched parentheses)";
      wordStart = WORD_BREAK.test(char);
    }
  }
  const outer = stack[0];
  return { verdicts, unclosed: outer ? { opener: OPENER[outer.kind], index: outer.index } : null };
}

/** After a `$` at `i`: opens `$(`, `$((` or `${`; returns the index of the last character used. */
function dollar(text: string, i: number, push: (kind: FrameKind, index: number) => void): number {
  if (text[i + 1] === "(" && text[i + 2] === "(") {
    push("arith", i);
    return i + 2;
  }
  if (text[i + 1] === "(") {
    push("cmdsub", i);
    return i + 1;
  }
  if (text[i + 1] === "{") {
    push("param", i);
    return i + 1;
  }
  return i;
}

/** Reads a here-document's delimiter word from `start`: its quotes removed, and how many MARKs it holds. */
function readDelimiter(text: string, start: number): { delimiter: string; end: number; marks: number } {
  let i = start;
  while (text[i] === " " || text[i] === "\t") i++;
  let delimiter = "";
  let marks = 0;
  let quote: string | null = null;
  for (; i < text.length; i++) {
    const char = text[i] as string;
    if (char === MARK) marks++;
    if (quote) {
      if (char === quote) quote = null;
      else delimiter += char;
    } else if (char === "'" || char === '"') quote = char;
    else if (char === "\\") {
      const next = text[++i] ?? "";
      if (next === MARK) marks++;
      delimiter += next;
    } else if (WORD_BREAK.test(char)) break;
    else delimiter += char;
  }
  return { delimiter, end: i, marks };
}

/** Skips the bodies of the pending here-documents from `start` (a line start); returns where the shell goes on. */
function skipHeredocs(
  text: string,
  start: number,
  pending: Array<{ delimiter: string; stripTabs: boolean }>,
  refuse: (problem: string) => void,
): number {
  let i = start;
  for (const heredoc of pending) {
    while (i < text.length) {
      const newline = text.indexOf("\n", i);
      const end = newline < 0 ? text.length : newline;
      const line = text.slice(i, end);
      i = newline < 0 ? text.length : end + 1;
      const bare = heredoc.stripTabs ? line.replace(/^\t+/, "") : line;
      if (bare === heredoc.delimiter) break;
      for (const char of line)
        if (char === MARK) refuse("in a here-document's body, which a line of the value could end");
    }
  }
  return i;
}
