"""Rewards read from the text of a completion alone: the think/answer layout (``format_reward``),
the share of target-language words in the reasoning (``language_reward``, counted by
``language``), and the overlong and repeated n-gram penalties (``penalties``)."""
