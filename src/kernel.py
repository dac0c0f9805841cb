"""Build the Kaggle kernel: one self-contained script and its kernel-metadata.json.

`kaggle kernels push -p kernel` uploads only the code file that the metadata
names, so that file cannot import `src`. This builder writes it from the `src`
modules themselves: starting at `kernel_entry.py` it follows every
`from .module import name`, orders the modules so that each comes after the
ones it imports, drops the relative imports, concatenates the rest and appends
the build's `Config`. Nothing in the script is kept by hand.

python -m src.kernel --username NAME --folds 5    # then: kaggle kernels push -p kernel
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import re
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

from .config import USER_ERRORS, Config, UserError, add_settings_arguments, config_from_args, user_error_message
from .files import atomic_write, write_json
from .kaggle.competition import COMPETITION
from .kaggle.credentials import kaggle_username

PACKAGE_DIR = Path(__file__).resolve().parent
ENTRY_MODULE = "kernel_entry"
DEFAULT_OUT_DIR = Path("kernel")
DEFAULT_TITLE = "Digit Recognizer Dense Network"
CODE_FILE = "digit_recognizer.py"
METADATA_FILE = "kernel-metadata.json"
FUTURE_IMPORT = "from __future__ import annotations"
# Besides the standard library, what Kaggle's Python image is sure to have.
KAGGLE_PACKAGES = frozenset({"tensorflow", "keras", "numpy", "pandas", "sklearn", "scipy", "matplotlib"})
SHAPE = "write `from .module import name`"


@dataclass
class Module:
    """One parsed `src` module and the `src` modules it imports."""

    name: str
    path: Path
    text: str
    tree: ast.Module
    imports: list[str]  # at top level, in order: these must come first in the script
    lazy_imports: list[str]  # inside functions or blocks: needed, but in any order


def read_module(package_dir: Path, name: str) -> Module:
    path = package_dir / f"{name}.py"
    if not path.is_file():
        raise UserError(f"{path}: not found; the kernel builder inlines only modules of {package_dir}")
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text, filename=str(path))
    imports, lazy_imports = [], []
    for node in ast.walk(tree):
        dependency = _relative_dependency(path, package_dir.name, node)
        if dependency is not None:
            (imports if node in tree.body else lazy_imports).append(dependency)
    return Module(name, path, text, tree, imports, lazy_imports)


def _relative_dependency(path: Path, package: str, node: ast.AST) -> str | None:
    """The module a `from .module import name` reads; refuse the styles the builder cannot inline."""
    where = f"{path}: line {getattr(node, 'lineno', '?')}"
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.name.split(".")[0] == package:
                raise UserError(f"{where}: `import {alias.name}` cannot be inlined into the kernel; {SHAPE}")
        return None
    if not isinstance(node, ast.ImportFrom):
        return None
    if node.level == 0:
        if (node.module or "").split(".")[0] == package:
            raise UserError(f"{where}: `from {node.module} import ...` cannot be inlined into the kernel; {SHAPE}")
        return None
    if node.module is None:
        raise UserError(f"{where}: `from . import ...` cannot be inlined into the kernel; {SHAPE}")
    if node.level > 1 or "." in node.module:
        raise UserError(f"{where}: `from {'.' * node.level}{node.module}` is outside the flat package; {SHAPE}")
    for alias in node.names:
        if alias.name == "*" or alias.asname:
            shown = alias.name + (f" as {alias.asname}" if alias.asname else "")
            raise UserError(
                f"{where}: `from .{node.module} import {shown}` cannot be inlined into the kernel's single "
                "namespace; import the names themselves"
            )
    return node.module


def collect_modules(package_dir: Path, entry: str) -> list[Module]:
    """`entry` and every module it needs, each after the modules it imports at top level."""
    modules: dict[str, Module] = {}
    order: list[str] = []
    active: list[str] = []

    def visit(name: str) -> None:
        if name in order:
            return
        if name in active:
            cycle = " -> ".join([*active[active.index(name) :], name])
            raise UserError(f"cannot build the kernel: circular imports {cycle}")
        active.append(name)
        module = modules.get(name) or read_module(package_dir, name)
        modules[name] = module
        for dependency in module.imports:
            visit(dependency)
        active.pop()
        order.append(name)

    visit(entry)
    position = 0
    while position < len(order):  # modules imported lazily, and what they import
        for dependency in modules[order[position]].lazy_imports:
            visit(dependency)
        position += 1
    return [modules[name] for name in order]


def top_level_bindings(tree: ast.Module) -> dict[str, tuple[str, int]]:
    """Each name a module binds at top level: `(what binds it, line)`."""
    bindings = {}
    statements = list(tree.body)
    while statements:
        node = statements.pop(0)
        for name, kind in _names_bound(node):
            bindings.setdefault(name, (kind, node.lineno))
        if isinstance(node, ast.If | ast.Try):
            handlers = [statement for handler in getattr(node, "handlers", []) for statement in handler.body]
            statements.extend([*node.body, *node.orelse, *handlers, *getattr(node, "finalbody", [])])
    return bindings


def _names_bound(node: ast.AST) -> list[tuple[str, str]]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [(node.name, "definition")]
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = [n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name)]
        return [(name, "definition") for name in names]
    if isinstance(node, ast.Import):
        return [(a.asname or a.name.split(".")[0], f"import {a.name} as {a.asname}") for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
        return [(a.asname or a.name, f"from {node.module} import {a.name}") for a in node.names]
    return []


def check_names(sources: list[tuple[str, ast.Module]]) -> None:
    """Refuse two modules binding one top-level name: in one script the later would win."""
    seen: dict[str, tuple[str, str, int]] = {}
    for where, tree in sources:
        for name, (kind, line) in top_level_bindings(tree).items():
            if name in seen:
                other_where, other_kind, other_line = seen[name]
                if kind == other_kind and kind != "definition":
                    continue  # the same import in two modules binds the same object
                raise UserError(
                    f"cannot build the kernel: `{name}` is defined at top level in both {other_where}:{other_line} "
                    f"and {where}:{line}; the kernel script is one namespace, so rename one of them"
                )
            seen[name] = (where, kind, line)


def check_packages(module: Module) -> None:
    """The kernel may import only the standard library and what Kaggle's image has."""
    for node in ast.walk(module.tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top not in sys.stdlib_module_names and top not in KAGGLE_PACKAGES:
                raise UserError(
                    f"{module.path}: line {node.lineno}: imports {top}, which Kaggle's Python image may lack; "
                    f"the kernel may use only the standard library and {', '.join(sorted(KAGGLE_PACKAGES))}"
                )


def module_body(module: Module) -> str:
    """The module's code without its docstring, `__future__` import and relative imports."""
    replacements: dict[int, str | None] = {}  # first line (0-based) -> its replacement; None deletes
    removed: set[int] = set()

    def replace(node: ast.stmt, replacement: str | None) -> None:
        replacements[node.lineno - 1] = replacement
        removed.update(range(node.lineno, node.end_lineno))

    body = module.tree.body
    docstring = ast.get_docstring(module.tree, clean=True)
    if docstring is not None:
        replace(body[0], None)
    for node in ast.walk(module.tree):
        if isinstance(node, ast.ImportFrom) and (node.level > 0 or node.module == "__future__"):
            # A nested import becomes `pass`: the name is already global, and the block stays valid.
            replace(node, None if node in body else " " * node.col_offset + "pass")
        elif isinstance(node, ast.Import | ast.ImportFrom) and node in body:
            replace(node, None)  # hoisted to the top of the script by `hoisted_imports`
        elif node in body and _is_main_guard(node):
            replace(node, None)  # in one script every module is __main__: only the trailer's guard stays
    lines = []
    for number, line in enumerate(module.text.splitlines()):
        if number in removed:
            continue
        if number in replacements:
            if replacements[number] is not None:
                lines.append(replacements[number])
            continue
        lines.append(line)
    code = re.sub(r"\n{4,}", "\n\n\n", "\n".join(lines).strip("\n"))
    summary = docstring.splitlines()[0] if docstring else ""
    return f"# ---- {module.path.parent.name}/{module.path.name}: {summary}\n\n{code}\n"


def _is_main_guard(node: ast.AST) -> bool:
    """`if __name__ == "__main__":`"""
    return isinstance(node, ast.If) and ast.unparse(node.test).replace("'", '"') == '__name__ == "__main__"'


def hoisted_imports(modules: list[Module]) -> str:
    """The modules' top-level imports, each name once, for the top of the script."""
    plain: list[str] = []
    from_imports: dict[str, list[str]] = {}
    for module in modules:
        for node in module.tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    statement = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
                    if statement not in plain:
                        plain.append(statement)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
                names = from_imports.setdefault(node.module, [])
                for alias in node.names:
                    name = alias.name + (f" as {alias.asname}" if alias.asname else "")
                    if name not in names:
                        names.append(name)
    lines = plain + [f"from {source} import {', '.join(names)}" for source, names in from_imports.items()]
    return "\n".join(lines) + "\n"


def inline_modules(package_dir: Path, entry: str, trailer: str = "") -> tuple[str, list[str]]:
    """`entry` and the modules it needs, as one piece of code followed by `trailer`.

    Returns:
        The code (without the `__future__` import) and the modules' names, in order.
    """
    modules = collect_modules(package_dir, entry)
    for module in modules:
        check_packages(module)
    sources = [(str(module.path), module.tree) for module in modules]
    check_names([*sources, ("the generated trailer", ast.parse(trailer))])
    code = "\n\n".join(module_body(module) for module in modules)
    return hoisted_imports(modules) + "\n\n" + code + trailer, [module.name for module in modules]


def build_script(config: Config, title: str = DEFAULT_TITLE) -> str:
    """The kernel's one code file: the `src` modules it needs, then `main(CONFIG)`."""
    arguments = ", ".join(f"{field.name}={getattr(config, field.name)!r}" for field in dataclasses.fields(config))
    trailer = (
        "\n\n# ---- generated by python -m src.kernel: the settings of this build\n"
        f"CONFIG = Config({arguments})\n\n"
        'if __name__ == "__main__":\n'
        "    raise SystemExit(main(CONFIG))\n"
    )
    code, names = inline_modules(PACKAGE_DIR, ENTRY_MODULE, trailer)
    contents = (
        f"The src package's modules {', '.join(names)}, in that order, then the build's settings "
        f"({config.short_name()}) as CONFIG, and a call to main(CONFIG)."
    )
    header = (
        f'"""{title}: a Kaggle kernel generated by `python -m src.kernel`; rebuild it, do not edit it.\n\n'
        f'{textwrap.fill(contents, width=100)}\n"""\n\n'
    )
    return header + FUTURE_IMPORT + "\n\n" + code


def slugify(title: str) -> str:
    """The kernel's URL name as Kaggle derives it from the title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def kernel_metadata(username: str, title: str, gpu: bool = False, public: bool = False) -> dict:
    """`kernel-metadata.json` for a script kernel on the competition's data."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", username or ""):
        raise UserError(f"the Kaggle user name must be letters, digits, '-' or '_', got {username!r}")
    if len(slugify(title)) < 5:
        raise UserError(f"the kernel title needs at least 5 letters or digits, got {title!r}")
    return {
        "id": f"{username}/{slugify(title)}",
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": not public,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }


def write_kernel(config: Config, username: str, out_dir: Path, title: str, gpu: bool, public: bool) -> dict:
    """Write the script and its metadata into `out_dir`; returns the metadata."""
    metadata = kernel_metadata(username, title, gpu, public)
    script = build_script(config, title)
    atomic_write(out_dir / CODE_FILE, lambda temporary: temporary.write_text(script, encoding="utf-8"))
    write_json(out_dir / METADATA_FILE, metadata)
    return metadata


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m src.kernel",
        description=(
            f"Write {DEFAULT_OUT_DIR}/{CODE_FILE} (one self-contained script generated from src) and "
            f"{DEFAULT_OUT_DIR}/{METADATA_FILE}, ready for `kaggle kernels push -p {DEFAULT_OUT_DIR}`."
        ),
        epilog="The model and training flags are those of python -m src.submit.",
    )
    kernel = parser.add_argument_group("kernel")
    kernel.add_argument("--username", help="your Kaggle user name (default: KAGGLE_USERNAME or kaggle.json)")
    kernel.add_argument("--title", default=DEFAULT_TITLE, help=f"the kernel's title (default: {DEFAULT_TITLE})")
    kernel.add_argument("--gpu", action="store_true", help="run the kernel on a GPU (default: CPU)")
    kernel.add_argument("--public", action="store_true", help="make the kernel public (default: private)")
    kernel.add_argument(
        "--out-dir", type=Path, default=DEFAULT_OUT_DIR, help=f"where to write (default: {DEFAULT_OUT_DIR}/)"
    )
    add_settings_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = config_from_args(args)
        username = args.username or kaggle_username()
        if not username:
            raise UserError(
                "no Kaggle user name: pass --username NAME, or set KAGGLE_USERNAME or ~/.kaggle/kaggle.json"
            )
        metadata = write_kernel(config, username, args.out_dir, args.title, args.gpu, args.public)
    except USER_ERRORS as error:
        print(user_error_message(error), file=sys.stderr)
        return 2
    print(f"wrote {args.out_dir / CODE_FILE} and {args.out_dir / METADATA_FILE} (id {metadata['id']})")
    print(f"next: kaggle kernels push -p {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
