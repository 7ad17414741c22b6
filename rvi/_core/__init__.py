"""rvi's private infrastructure, the bottom layer: argument and tensor checks, atomic writes,
reuse of repeated model queries, a model's state and layout, progress lines, how intervals and p
values read, and the method and metric registry classes. It imports nothing else from rvi."""
