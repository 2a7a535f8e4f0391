"""Print the import graph between the parts of perpstream (docs/layout.md): one line per part,
the parts it imports directly. `make graph` runs it; the layer contracts in pyproject.toml
check the same graph."""

from __future__ import annotations

import grimp


def part(module: str) -> str:
    return ".".join(module.split(".")[:2])


def main() -> None:
    graph = grimp.build_graph("perpstream")
    uses: dict[str, set[str]] = {}
    for module in graph.modules:
        if module == "perpstream":
            continue
        imported = {part(m) for m in graph.find_modules_directly_imported_by(module)}
        uses.setdefault(part(module), set()).update(imported - {part(module), "perpstream"})
    width = max(map(len, uses))
    for name in sorted(uses):
        print(f"{name:{width}}  ->  {', '.join(sorted(uses[name])) or '(nothing of perpstream)'}")


if __name__ == "__main__":
    main()
