"""
A small built-in training text and a byte-level tokeniser, so that `python -m nanochat_verify.trace` can
run real training iterations with no download and no tokeniser files.

Byte-level: every UTF-8 byte is one token, so the vocabulary is exactly 256 ids and any text encodes
losslessly. The text below was written for this project (it is not taken from anywhere); it is
ordinary English prose about a river and a mill, long enough (a few KB) that random windows of it
make varied batches, and regular enough that a tiny model's loss falls within a few steps.
"""

import torch

VOCAB_SIZE = 256  # one token per byte value

TEXT = """\
The river rises in the hills above the village, where the snow lies late into spring and the
water runs cold and clear over flat grey stones. For most of the year it is a quiet river. It
bends around the old orchard, slides under the stone bridge, and turns the wheel of the mill
before it widens into the marsh and loses itself among the reeds.

The miller was an early riser. Before the light came over the ridge he would walk down to the
sluice, lift the wooden gate a hand's width, and listen. A good morning had a particular sound:
the first slap of water on the paddles, then a slow groan from the axle, then the steady knock of
the gears as the great stones began to turn. He said he could tell the weather of the whole valley
from that sound. When the river was low the wheel laboured and the knock came slow; when it was
high the wheel raced and he had to close the gate again before the stones ran hot.

People came to the mill with their grain in sacks on their backs, or in carts when the harvest
was good. They waited on the bench by the door and talked about the price of salt, the new road,
the bridge that needed mending, the children who had gone to the town and the few who had come
back. The miller weighed every sack twice, once when it arrived and once when it left as flour,
and he wrote both numbers in a book with a green cover. The book was older than he was. His father
had kept it, and his grandmother before that, and the first pages were written in a hand so small
and careful that nobody could read it any more.

In the autumn the rain came in from the west and the river changed its mind about everything.
It rose over the lower meadow and carried away fences, branches, a gate, once a whole haystack
that turned slowly in the current like a ship that had forgotten where it was going. The miller
closed the sluice and let the wheel stand still. On those days the mill was silent except for the
rain on the roof, and he sat by the window mending sacks and counting the hours until the water
went down.

Winter was the quiet season. Ice formed along the banks, thin at first and then thick enough to
walk on near the edges. The children of the village slid on it and were told not to, and slid on
it anyway. The miller greased the gears, replaced a paddle that had cracked, and sharpened the
grooves in the millstones with a small steel pick, one stroke at a time, the way his father had
shown him. It was slow work, and he liked it, because a stone that is dressed well grinds fine
flour for a whole year and a stone that is dressed badly grinds nothing but complaints.

When spring returned the snow on the hills melted all at once, and for a week the river was loud
and brown and full of itself. Then it settled. The water cleared, the meadow dried, the swallows
came back to the eaves of the mill, and one morning before dawn the miller walked down to the
sluice, lifted the gate a hand's width, and listened again. The wheel turned. The axle groaned.
The gears began their steady knock, and the valley had its sound back.

Years later, when the mill had become a museum and the wheel turned only on Sundays for visitors,
a girl from the village found the green book in a drawer. She could not read the first pages, but
she could read the last ones, and she added them up: every sack that had come in, every sack that
had gone out. The numbers almost matched. The difference, her teacher said, was the flour that
had settled as dust on the beams, on the windows, on the miller's sleeves, and in the air of the
valley itself, carried away a little at a time by the wind along the river.
"""


def encode(text):
    """Token ids of `text`: its UTF-8 bytes."""
    return list(text.encode("utf-8"))


def decode(ids):
    """The text of a sequence of byte ids (invalid UTF-8 shown as the replacement character)."""
    return bytes(int(i) for i in ids).decode("utf-8", errors="replace")


def tokens():
    """The built-in text as a 1-D int64 tensor of byte ids."""
    return torch.tensor(encode(TEXT), dtype=torch.long)


def max_sequence_len():
    """The longest training window the text allows (one token is held back for the last target)."""
    return len(TEXT.encode("utf-8")) - 1


def random_batch(data, batch_size, seq_len, generator):
    """A (batch_size, seq_len) batch of windows at random offsets and the next-byte targets.

    Targets are the inputs shifted by one position: row b predicts data[s_b + 1 : s_b + seq_len + 1].
    """
    if not 1 <= seq_len <= len(data) - 1:
        raise ValueError(f"seq_len must lie in [1, {len(data) - 1}] for a text of {len(data)} tokens, got {seq_len}")
    starts = torch.randint(0, len(data) - seq_len, (batch_size,), generator=generator)
    offsets = torch.arange(seq_len)
    idx = data[starts[:, None] + offsets]  # (B, T)
    targets = data[starts[:, None] + offsets + 1]  # (B, T)
    return idx, targets
