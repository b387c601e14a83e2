/**
 * The public API as users see it: for each entry point of package.json's `exports` map, the names
 * it exports and the declarations TypeScript publishes for them (as `npm run build` emits them,
 * with `stripInternal`, comments removed so that doc edits do not count as API changes).
 *
 * spec/package/api.spec.ts compares this with the committed spec/package/api.md. To accept a
 * deliberate change of the surface:
 *
 *   npm run api:update        (runs this file with --write)
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as ts from 'typescript';

export const ROOT = path.resolve(__dirname, '..', '..');
export const SNAPSHOT = path.join(ROOT, 'spec', 'package', 'api.md');
export const UPDATE_COMMAND = 'npm run api:update';

export interface EntryPoint {
  /** The subpath in package.json's exports: '.', './ws' ... */
  subpath: string;
  /** The TypeScript source it is built from, relative to ROOT. */
  source: string;
}

export interface ExportedName {
  name: string;
  /** 'value' when it exists at run time (a class, function, const, enum), 'type' otherwise. */
  kind: 'value' | 'type';
}

export interface Surface {
  entries: Array<EntryPoint & { names: ExportedName[]; declarations: string }>;
  /** Every emitted declaration file (path relative to the output directory) and its text. */
  files: Map<string, string>;
}

type ExportTarget = string | { types?: string; default?: string; require?: string; import?: string } | null;

/**
 * The entry points named by package.json's exports map: each subpath's declarations (`types`),
 * mapped back to the .ts source they are built from (./dist/lib/x/index.d.ts: lib/x/index.ts).
 */
export function entryPoints(): EntryPoint[] {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { exports: Record<string, ExportTarget> };
  const entries: EntryPoint[] = [];
  for (const [subpath, target] of Object.entries(pkg.exports)) {
    if (target === null || typeof target === 'string') continue; // ./package.json
    const match = /^\.\/dist\/(lib\/.*)\.d\.ts$/.exec(target.types ?? '');
    if (match === null) throw new Error(`package.json exports ${subpath} has no types under ./dist/lib/`);
    entries.push({ subpath, source: `${match[1]}.ts` });
  }
  return entries;
}

/** Compiles the entry points' declarations in memory, as the build does. */
function emitDeclarations(entries: EntryPoint[]): { program: ts.Program; dts: Map<string, string> } {
  const configFile = path.join(ROOT, 'tsconfig.build.json');
  const config = ts.readConfigFile(configFile, (f) => ts.sys.readFile(f));
  const parsed = ts.parseJsonConfigFileContent(config.config, ts.sys, ROOT, undefined, configFile);
  const options: ts.CompilerOptions = {
    ...parsed.options,
    declaration: true,
    emitDeclarationOnly: true,
    declarationMap: false,
    sourceMap: false,
    noEmit: false,
    outDir: path.join(ROOT, 'api-surface-out'),
  };
  const program = ts.createProgram({ rootNames: entries.map((e) => path.join(ROOT, e.source)), options });
  const dts = new Map<string, string>();
  program.emit(undefined, (fileName, text) => {
    dts.set(path.relative(options.outDir!, fileName).split(path.sep).join('/'), text);
  });
  return { program, dts };
}

function declaredNames(statement: ts.Statement): string[] {
  if (ts.isVariableStatement(statement)) {
    return statement.declarationList.declarations.map((d) => (ts.isIdentifier(d.name) ? d.name.text : ''));
  }
  const named = statement as ts.Statement & { name?: ts.Node };
  return named.name !== undefined && ts.isIdentifier(named.name) ? [named.name.text] : [];
}

/**
 * A class without its private members: they appear in declarations by name only (so that
 * assignability works) and are no one's API; leaving them out lets the implementation change
 * without touching the snapshot.
 */
function withoutPrivates(statement: ts.Statement): ts.Statement {
  if (!ts.isClassDeclaration(statement)) return statement;
  const members = statement.members.filter(
    (m) => !(ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Private) && !(m.name !== undefined && ts.isPrivateIdentifier(m.name)),
  );
  return ts.factory.updateClassDeclaration(
    statement,
    statement.modifiers,
    statement.name,
    statement.typeParameters,
    statement.heritageClauses,
    members,
  );
}

/**
 * The unexported `declare const X_base: ...` that TypeScript emits for a class whose `extends` is
 * an expression (`class WebSocket extends (Duplex as Emitting<...>)`): the class's base, printed
 * with it so that the snapshot still says what the class extends.
 */
function baseOf(statement: ts.Statement, file: ts.SourceFile): ts.Statement | undefined {
  if (!ts.isClassDeclaration(statement)) return undefined;
  const base = statement.heritageClauses?.find((h) => h.token === ts.SyntaxKind.ExtendsKeyword)?.types[0]?.expression;
  if (base === undefined || !ts.isIdentifier(base)) return undefined;
  return file.statements.find(
    (s) => ts.isVariableStatement(s) && !s.modifiers?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword) && declaredNames(s).includes(base.text),
  );
}

/** The public surface of every entry point. */
export function apiSurface(): Surface {
  const entries = entryPoints();
  const { program, dts } = emitDeclarations(entries);
  const checker = program.getTypeChecker();
  const printer = ts.createPrinter({ removeComments: true, newLine: ts.NewLineKind.LineFeed });
  const parsedDts = new Map<string, ts.SourceFile>();
  const dtsOf = (sourceFile: string): ts.SourceFile | undefined => {
    const key = path.relative(ROOT, sourceFile).split(path.sep).join('/').replace(/\.ts$/, '.d.ts');
    if (!parsedDts.has(key)) {
      const text = dts.get(key);
      if (text === undefined) return undefined;
      parsedDts.set(key, ts.createSourceFile(key, text, ts.ScriptTarget.ES2022, true));
    }
    return parsedDts.get(key);
  };
  return {
    files: dts,
    entries: entries.map((entry) => {
      const sourceFile = program.getSourceFile(path.join(ROOT, entry.source));
      if (sourceFile === undefined) throw new Error(`${entry.source} (package.json exports ${entry.subpath}) does not exist`);
      const moduleSymbol = checker.getSymbolAtLocation(sourceFile)!;
      const names: ExportedName[] = [];
      const blocks: string[] = [];
      for (const exported of checker.getExportsOfModule(moduleSymbol)) {
        const target = exported.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(exported) : exported;
        const specifier = exported.declarations?.[0];
        const typeOnly =
          specifier !== undefined && ts.isExportSpecifier(specifier) && (specifier.isTypeOnly || specifier.parent.parent.isTypeOnly);
        const kind = !typeOnly && target.flags & ts.SymbolFlags.Value ? 'value' : 'type';
        names.push({ name: exported.name, kind });
        const printed = new Set<string>();
        for (const declaration of target.declarations ?? []) {
          const file = dtsOf(declaration.getSourceFile().fileName);
          if (file === undefined) continue;
          for (const statement of file.statements) {
            if (!declaredNames(statement).includes(target.name)) continue;
            const base = baseOf(statement, file);
            if (base !== undefined) printed.add(printer.printNode(ts.EmitHint.Unspecified, base, file));
            const text = printer.printNode(ts.EmitHint.Unspecified, withoutPrivates(statement), file);
            if (!printed.has(text)) printed.add(text);
          }
        }
        const from = path.relative(ROOT, target.declarations?.[0]?.getSourceFile().fileName ?? '').split(path.sep).join('/');
        const alias = target.name === exported.name ? '' : ` (${target.name})`;
        blocks.push(`// ${exported.name}${alias}: ${kind}, from ${from}\n${[...printed].join('\n')}`);
      }
      const order = names.map((n, i) => [n.name, i] as const).sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
      return {
        ...entry,
        names: order.map(([, i]) => names[i]!),
        declarations: order.map(([, i]) => blocks[i]!).join('\n\n'),
      };
    }),
  };
}

/** The snapshot file's text for a surface. */
export function renderSnapshot(surface: Surface): string {
  const parts = [
    '# The public API (generated)',
    '',
    `Generated by \`${UPDATE_COMMAND}\` from the entry points of package.json's \`exports\`; checked by`,
    'spec/package/api.spec.ts. A change here is a change users see: review it as such.',
  ];
  for (const entry of surface.entries) {
    const id = entry.subpath === '.' ? 'wspipe' : `wspipe/${entry.subpath.replace(/^\.\//, '')}`;
    parts.push('', `## ${id} (${entry.source})`, '', '### Names', '');
    for (const n of entry.names) parts.push(`- ${n.kind === 'type' ? 'type ' : ''}${n.name}`);
    parts.push('', '### Declarations', '', '```ts', entry.declarations, '```');
  }
  return `${parts.join('\n')}\n`;
}

if (require.main === module) {
  const text = renderSnapshot(apiSurface());
  if (process.argv.includes('--write')) {
    fs.writeFileSync(SNAPSHOT, text);
    console.log(`wrote ${path.relative(ROOT, SNAPSHOT)}`);
  } else {
    process.stdout.write(text);
  }
}
