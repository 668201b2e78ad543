"""DeepSeek-Coder special tokens, id layout, system prompts and chat template: the one place they are spelled out.

Id layout of a DeepSeek-Coder tokenizer with `bpe_vocab_size` N (N = 32000 for the released models):

    0 .. N-1          byte-level BPE tokens (the 243 reachable byte symbols, then the learned merges)
    N .. N+12         the 13 byte-level "leftovers": the byte-level symbols of the bytes 0xC0, 0xC1, 0xF5-0xFF,
                      which never occur in UTF-8, so the BPE trainer never sees them (`õ ÷ Á ý À ÿ ø ú þ ü ù ö û`)
    N+13 .. N+21      the special tokens, in the order of `SPECIAL_TOKENS`

The strings use U+FF5C (fullwidth vertical bar) and U+2581 (lower one eighth block); `<|User|>`, `<|Assistant|>`
and `<|EOT|>` use ASCII bars. Sources: /work/shared/docs/deepseek-coder-facts.md §2 (README ids 32014/32021 and
FIM strings, third-party token table for the rest) and §5 (chat template).
"""

from __future__ import annotations

# -----------------------------------------------------------------------------
# Special token strings

BOS_TOKEN = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"  # <｜begin▁of▁sentence｜>, id 32013
EOS_TOKEN = "<\uff5cend\u2581of\u2581sentence\uff5c>"  # <｜end▁of▁sentence｜>, id 32014, end of a document
FIM_HOLE_TOKEN = "<\uff5cfim\u2581hole\uff5c>"  # <｜fim▁hole｜>, id 32015
FIM_BEGIN_TOKEN = "<\uff5cfim\u2581begin\uff5c>"  # <｜fim▁begin｜>, id 32016
FIM_END_TOKEN = "<\uff5cfim\u2581end\uff5c>"  # <｜fim▁end｜>, id 32017
PAD_TOKEN = "<pad>"  # id 32018
USER_TOKEN = "<|User|>"  # id 32019
ASSISTANT_TOKEN = "<|Assistant|>"  # id 32020
EOT_TOKEN = "<|EOT|>"  # id 32021, end of an instruct turn (eos of the instruct models)

# In id order: SPECIAL_TOKENS[i] has id bpe_vocab_size + NUM_BYTE_LEVEL_LEFTOVERS + i.
SPECIAL_TOKENS: tuple[str, ...] = (
    BOS_TOKEN,
    EOS_TOKEN,
    FIM_HOLE_TOKEN,
    FIM_BEGIN_TOKEN,
    FIM_END_TOKEN,
    PAD_TOKEN,
    USER_TOKEN,
    ASSISTANT_TOKEN,
    EOT_TOKEN,
)

# -----------------------------------------------------------------------------
# Byte-level alphabet and its 13 leftovers


def byte_level_char(byte: int) -> str:
    """The character GPT-2's byte-level alphabet (`bytes_to_unicode`) uses for one byte 0-255.

    Printable Latin-1 bytes (`!`-`~`, `¡`-`¬`, `®`-`ÿ`) stand for themselves; the other 68 bytes are shifted to
    U+0100 and up in byte order. This is the table `tokenizers.pre_tokenizers.ByteLevel` uses.
    """
    if not 0 <= byte <= 255:
        raise ValueError(f"byte out of range: {byte}")
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    if byte in printable:
        return chr(byte)
    shifted = [b for b in range(256) if b not in printable]
    return chr(256 + shifted.index(byte))


# The bytes that never occur in well-formed UTF-8 (0xC0 and 0xC1 would start overlong 2-byte sequences; 0xF5-0xFF
# would encode code points above U+10FFFF), in the order DeepSeek-Coder gives their symbols ids 32000-32012.
BYTE_LEVEL_LEFTOVER_BYTES: tuple[int, ...] = (
    0xF5,  # õ  32000
    0xF7,  # ÷  32001
    0xC1,  # Á  32002
    0xFD,  # ý  32003
    0xC0,  # À  32004
    0xFF,  # ÿ  32005
    0xF8,  # ø  32006
    0xFA,  # ú  32007
    0xFE,  # þ  32008
    0xFC,  # ü  32009
    0xF9,  # ù  32010
    0xF6,  # ö  32011
    0xFB,  # û  32012
)
BYTE_LEVEL_LEFTOVERS: tuple[str, ...] = tuple(byte_level_char(b) for b in BYTE_LEVEL_LEFTOVER_BYTES)
NUM_BYTE_LEVEL_LEFTOVERS = len(BYTE_LEVEL_LEFTOVERS)  # 13

# The BPE alphabet of a trained tokenizer: every byte-level symbol that UTF-8 text can produce (256 - 13 = 243).
REACHABLE_BYTE_LEVEL_ALPHABET: tuple[str, ...] = tuple(
    byte_level_char(b) for b in range(256) if b not in BYTE_LEVEL_LEFTOVER_BYTES
)

DEEPSEEK_CODER_BPE_VOCAB_SIZE = 32000  # paper §3.2; real ids then run 0..32021, the model pads embeddings to 32256


def leftover_token_ids(bpe_vocab_size: int = DEEPSEEK_CODER_BPE_VOCAB_SIZE) -> dict[str, int]:
    """Id of each byte-level leftover symbol for a tokenizer whose BPE part has `bpe_vocab_size` ids."""
    return {token: bpe_vocab_size + i for i, token in enumerate(BYTE_LEVEL_LEFTOVERS)}


def special_token_ids(bpe_vocab_size: int = DEEPSEEK_CODER_BPE_VOCAB_SIZE) -> dict[str, int]:
    """Id of each special token for a tokenizer whose BPE part has `bpe_vocab_size` ids (32013.. for 32000)."""
    first = bpe_vocab_size + NUM_BYTE_LEVEL_LEFTOVERS
    return {token: first + i for i, token in enumerate(SPECIAL_TOKENS)}


def total_vocab_size(bpe_vocab_size: int = DEEPSEEK_CODER_BPE_VOCAB_SIZE) -> int:
    """Number of real ids (BPE + leftovers + special tokens): 32022 for DeepSeek-Coder."""
    return bpe_vocab_size + NUM_BYTE_LEVEL_LEFTOVERS + len(SPECIAL_TOKENS)


# -----------------------------------------------------------------------------
# Instruct prompts and chat template

# The default system text the HF chat template of deepseek-coder-*-instruct emits when no system message is given.
# Note "Deepseek" (lower-case s) and no final period; it ends with a newline.
CHAT_TEMPLATE_SYSTEM_PROMPT = (
    "You are an AI programming assistant, utilizing the Deepseek Coder model, developed by Deepseek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer\n"
)

# The system text of the SFT prompt in deepseek-ai/DeepSeek-Coder finetune/finetune_deepseekcoder.py
# (`build_instruction_prompt`): "DeepSeek" spelled with a capital S, and a final period. No trailing newline.
FINETUNE_SYSTEM_PROMPT = (
    "You are an AI programming assistant, utilizing the DeepSeek Coder model, developed by DeepSeek Company, "
    "and you only answer questions related to computer science. For politically sensitive questions, security "
    "and privacy issues, and other non-computer science questions, you will refuse to answer."
)

# `chat_template` of deepseek-ai/deepseek-coder-33b-instruct (tokenizer_config.json), copied character for character
# from the test case "deepseek-ai/deepseek-coder-33b-instruct" in huggingface/text-generation-inference
# router/src/infer/chat_template.rs, which quotes the Hub file; it agrees with the description in
# deepseek-coder-facts.md §5 (bos first, default system prompt, "### Instruction:\n", "### Response:\n...\n<|EOT|>\n",
# generation prompt "### Response:"). Rendered by transformers with trim_blocks and lstrip_blocks.
DEEPSEEK_CODER_CHAT_TEMPLATE = (
    "{% if not add_generation_prompt is defined %}\n"
    "{% set add_generation_prompt = false %}\n"
    "{% endif %}\n"
    "{%- set ns = namespace(found=false) -%}\n"
    "{%- for message in messages -%}\n"
    "    {%- if message['role'] == 'system' -%}\n"
    "        {%- set ns.found = true -%}\n"
    "    {%- endif -%}\n"
    "{%- endfor -%}\n"
    "{{bos_token}}{%- if not ns.found -%}\n"
    "{{'" + CHAT_TEMPLATE_SYSTEM_PROMPT.replace("\n", "\\n") + "'}}\n"
    "{%- endif %}\n"
    "{%- for message in messages %}\n"
    "    {%- if message['role'] == 'system' %}\n"
    "{{ message['content'] }}\n"
    "    {%- else %}\n"
    "        {%- if message['role'] == 'user' %}\n"
    "{{'### Instruction:\\n' + message['content'] + '\\n'}}\n"
    "        {%- else %}\n"
    "{{'### Response:\\n' + message['content'] + '\\n<|EOT|>\\n'}}\n"
    "        {%- endif %}\n"
    "    {%- endif %}\n"
    "{%- endfor %}\n"
    "{% if add_generation_prompt %}\n"
    "{{'### Response:'}}\n"
    "{% endif %}"
)

# -----------------------------------------------------------------------------
# Pre-tokenizer

# DeepSeek-Coder's split regexes, applied in order with "isolated" behaviour (each match becomes its own piece and
# the text between matches stays a piece too, so whitespace and symbol runs survive). Source: llama.cpp
# src/llama-vocab.cpp, LLAMA_VOCAB_PRE_TYPE_DEEPSEEK_CODER (ggml-org/llama.cpp PRs #3986/#4070/#6252). The last rule,
# `\p{N}`, is applied as `Digits(individual_digits=True)`, which is the same split. The exact HF tokenizer.json of
# deepseek-coder was not available to compare byte for byte (facts §2: UNCONFIRMED).
PRE_TOKENIZER_SPLIT_PATTERNS: tuple[str, ...] = (
    r"[\r\n]",
    r"\s?\p{L}+",
    r"\s?\p{P}+",
    "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+",  # [一-龥ࠀ-一가-퟿]+ : CJK ideographs, U+0800-U+4E00, Hangul
)
