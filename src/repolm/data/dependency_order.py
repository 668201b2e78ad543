"""The paper's Algorithm 1: the order in which a repository's files are concatenated, and its import cycles.

DeepSeek-Coder (paper section 2.2, Algorithm 1) orders each weakly connected group of a repository's files so that a
file's dependencies come before it: repeatedly take the unplaced file with the smallest current in-degree (ties at
random), which also breaks cycles. Here:

- `dependency_order` is Algorithm 1 (heap with lazy entries, O((V+E) log V)), with an optional cycle-aware variant
  that places every dependency before its dependent unless both are in one cycle;
- `dependency_cycles` lists the strongly connected components (iterative Tarjan, so no recursion limit) for reports
  and for the cycle-aware order;
- `edges_in_order` measures an order: the share of given edges, outside cycles, whose dependency comes first.

Both work on a plain graph, file path -> the paths it depends on, and are deterministic: the order depends only on
the graph and the seed, never on the input order. Not handled here: finding the dependencies (imports are extracted
and resolved to files in `repolm.data.dependencies`) and turning the ordered files into samples
(`repolm.data.assembly`).
"""

from __future__ import annotations

import heapq
import random
from collections import defaultdict
from collections.abc import Iterable, Mapping


def dependency_order(
    paths: list[str], dependencies: Mapping[str, Iterable[str]], seed: str | int = 0, cycle_aware: bool = False
) -> list[list[str]]:
    """The paper's Algorithm 1: one sequence per weakly connected group of files, dependencies first.

    An edge B->A is added when A depends on B (dependencies outside `paths` and on itself are ignored). Within a
    group, the unplaced file with the smallest current in-degree is placed next and its successors' in-degrees
    drop by one; taking the minimum rather than zero is what lets cycles through. Ties go to a seeded random
    priority drawn for every file in sorted path order, so the result depends only on the graph and the seed, not
    on the input order. Groups come in the order of their smallest path. O((V + E) log V).

    Once no file of a group is free of unplaced dependencies (a cycle is left), the paper's rule may place any file
    with the smallest count, one far from the cycle included, before its dependencies. `cycle_aware=True` first
    requires all dependencies outside the file's own cycle (strongly connected component) to be placed, then
    applies the same rule: every dependency then precedes its dependent unless both are in one cycle. On acyclic
    graphs both give the same order.
    """
    nodes = sorted(set(paths))
    position = {node: index for index, node in enumerate(nodes)}
    edges = [
        (position[dependency], target)
        for target, dependent in enumerate(nodes)
        for dependency in sorted(set(dependencies.get(dependent, ())))
        if dependency in position and dependency != dependent
    ]
    component = list(range(len(nodes)))
    if cycle_aware:
        graph = {node: [] for node in nodes}
        for source, target in edges:
            graph[nodes[target]].append(nodes[source])
        for number, cycle in enumerate(dependency_cycles(graph)):
            for node in cycle:
                component[position[node]] = len(nodes) + number
    successors: list[list[int]] = [[] for _ in nodes]
    in_degree, outside = [0] * len(nodes), [0] * len(nodes)  # outside: unplaced dependencies not in its own cycle
    parent = list(range(len(nodes)))

    def find(index: int) -> int:
        while parent[index] != index:
            parent[index] = parent[parent[index]]
            index = parent[index]
        return index

    for source, target in edges:
        successors[source].append(target)
        in_degree[target] += 1
        outside[target] += component[source] != component[target]
        parent[find(source)] = find(target)
    generator = random.Random(str(seed))
    priority = [generator.random() for _ in nodes]
    groups: dict[int, list[int]] = defaultdict(list)
    for index in range(len(nodes)):  # nodes are sorted, so each group's first member is its smallest path
        groups[find(index)].append(index)
    placed = [False] * len(nodes)
    sequences = []
    for members in sorted(groups.values()):
        heap = [(outside[index], in_degree[index], priority[index], index) for index in members]
        heapq.heapify(heap)
        sequence = []
        while heap:
            waiting, degree, _, index = heapq.heappop(heap)
            if placed[index] or degree != in_degree[index] or waiting != outside[index]:
                continue  # a stale entry: the file was placed, or its counts dropped since it was pushed
            placed[index] = True
            sequence.append(nodes[index])
            for successor in successors[index]:
                if not placed[successor]:
                    in_degree[successor] -= 1
                    outside[successor] -= component[index] != component[successor]
                    heapq.heappush(heap, (outside[successor], in_degree[successor], priority[successor], successor))
        sequences.append(sequence)
    return sequences


def dependency_cycles(dependencies: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Strongly connected components of the dependency graph with more than one file (or a file depending on
    itself), each sorted, in order of their first path; iterative Tarjan, so no recursion limit."""
    graph = {node: sorted(set(targets)) for node, targets in dependencies.items()}
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, [])
    order: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for root in sorted(graph):
        if root in order:
            continue
        order[root] = lowest[root] = len(order)
        stack.append(root)
        on_stack.add(root)
        work = [(root, iter(graph[root]))]
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in order:
                    order[successor] = lowest[successor] = len(order)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(graph[successor])))
                    break
                if successor in on_stack:
                    lowest[node] = min(lowest[node], order[successor])
            else:
                work.pop()
                if work:
                    lowest[work[-1][0]] = min(lowest[work[-1][0]], lowest[node])
                if lowest[node] == order[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        cycles.append(sorted(component))
    return sorted(cycles)


def edges_in_order(
    edges: Iterable[tuple[str, str]], sequences: list[list[str]], dependencies: Mapping[str, Iterable[str]]
) -> tuple[int, int]:
    """(in order, counted): of the (dependent, dependency) `edges` whose two files are not in one cycle of
    `dependencies` (and both in `sequences`), those whose dependency comes first. The measure of an ordering."""
    position = {path: index for sequence in sequences for index, path in enumerate(sequence)}
    component = {path: number for number, cycle in enumerate(dependency_cycles(dependencies)) for path in cycle}
    in_order = counted = 0
    for dependent, dependency in edges:
        if dependent not in position or dependency not in position or dependent == dependency:
            continue
        if dependent in component and component.get(dependency) == component[dependent]:
            continue
        counted += 1
        in_order += position[dependency] < position[dependent]
    return in_order, counted
