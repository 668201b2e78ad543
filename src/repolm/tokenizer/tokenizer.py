"""`CodeTokenizer`: a byte-level BPE tokenizer (an HF `tokenizers.Tokenizer`) plus the settings of its HF folder.

It encodes and decodes token ids, knows the ids of the DeepSeek-Coder special tokens, renders chat templates the way
`transformers` does, and reads and writes HF tokenizer folders (`tokenizer.json`, `tokenizer_config.json`,
`special_tokens_map.json`). A folder written by `save` loads in `transformers.AutoTokenizer` with the same ids, and
`load` reads any HF folder that has a `tokenizer.json`, including ones written by `transformers`.

Decoding is exact: `decode(encode(text)) == text` for any string, because the pipeline has no normalizer, a
ByteLevel pre-tokenizer without prefix space, and a ByteLevel decoder, and nothing cleans up spaces.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

from repolm.errors import RepolmError, one_line
from repolm.folder_writer import write_folder
from repolm.tokenizer.special_tokens import (
    BOS_TOKEN,
    EOS_TOKEN,
    EOT_TOKEN,
    FIM_BEGIN_TOKEN,
    FIM_END_TOKEN,
    FIM_HOLE_TOKEN,
    PAD_TOKEN,
)

logger = logging.getLogger(__name__)

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_MAP_FILE = "special_tokens_map.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"  # transformers >= 4.50 saves the template here instead of in the config

DEFAULT_MODEL_MAX_LENGTH = 16384  # DeepSeek-Coder's context length (paper: 16K window)

# `tokenizer_class` written to tokenizer_config.json. `PreTrainedTokenizerFast` takes tokenizer.json as it is in
# transformers 4 and 5. `LlamaTokenizerFast` (what DeepSeek-Coder's folders name) makes transformers 5 warn that a
# ByteLevel tokenizer.json is not a Llama tokenizer before it falls back to the same class; transformers 4 would apply
# its own `add_bos_token` handling on top. (tests/tokenizer/test_tokenizer_folders.py checks the ids.)
HF_TOKENIZER_CLASS = "PreTrainedTokenizerFast"


def tokenizer_sha256(folder: str | Path) -> str:
    """The SHA-256 of a tokenizer folder's `tokenizer.json`: what names the tokenizer in token-corpus metadata and in
    evaluation records (what `sha256sum tokenizer.json` prints)."""
    return hashlib.sha256((Path(folder) / TOKENIZER_FILE).read_bytes()).hexdigest()


# -----------------------------------------------------------------------------
# Chat templates, rendered like transformers.utils.chat_template_utils._compile_jinja_template


class _GenerationTagExtension(jinja2.ext.Extension):
    """Accepts transformers' `{% generation %}...{% endgeneration %}` tag and renders its body unchanged."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return caller()


def _raise_template_error(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | None = None, separators=None, sort_keys=False) -> str:
    # Like transformers: no HTML escaping, unlike Jinja's own `tojson`.
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


@functools.lru_cache(maxsize=16)
def _compile_chat_template(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTagExtension, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_template_error
    env.globals["strftime_now"] = _strftime_now
    return env.from_string(template)


# -----------------------------------------------------------------------------
# Reading HF folders


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise RepolmError(f"{path}: not UTF-8 text ({one_line(error)})") from error
    except OSError as error:
        raise RepolmError(f"{path}: cannot read ({one_line(error)})") from error


def _read_optional_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`, or {} when the file does not exist."""
    if not path.is_file():
        return {}
    values = _read_json(path)
    if not isinstance(values, dict):
        raise RepolmError(f"{path}: expected a JSON object")
    return values


def _read_json(path: Path) -> Any:
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as error:
        raise RepolmError(f"{path}: not valid JSON ({one_line(error)})") from error


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json stores it: a string, or an AddedToken dict with "content"."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and isinstance(value.get("content"), str):
        return value["content"]
    return None


def _chat_template_from_config(value: Any) -> str | None:
    """`chat_template` may be one string or a list of {"name", "template"}; the "default" one is used."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        templates = {item.get("name"): item.get("template") for item in value if isinstance(item, dict)}
        return templates.get("default") or next(iter(templates.values()), None)
    return None


def _post_processor_adds(tokenizer_json: dict[str, Any], token: str | None) -> bool:
    """Whether tokenizer.json's post-processor inserts `token` (how HF folders without `add_bos_token` add BOS)."""
    if token is None:
        return False
    return token in json.dumps(tokenizer_json.get("post_processor") or {}, ensure_ascii=False)


# -----------------------------------------------------------------------------


class CodeTokenizer:
    """A byte-level BPE tokenizer with DeepSeek-Coder's special tokens, loaded from or saved to an HF folder.

    `bos_token`, `eos_token` and `pad_token` are the tokens named in tokenizer_config.json (for an instruct model the
    configured eos is `<|EOT|>`). The `*_id` properties name fixed roles instead: `eos_id` is always the id of
    `<｜end▁of▁sentence｜>` when the vocabulary has it, `eot_id` the id of `<|EOT|>`.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        *,
        bos_token: str | None = None,
        eos_token: str | None = None,
        pad_token: str | None = None,
        chat_template: str | None = None,
        add_bos_token: bool = True,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    ) -> None:
        self._tokenizer = tokenizer
        # Encoding must never silently cut or pad text; HF folders sometimes carry these settings.
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        self._literal_tokenizer: Tokenizer | None = None  # `encoding_backend(True)`, made on first use
        self.bos_token = bos_token
        self.eos_token = eos_token
        self.pad_token = pad_token
        self.chat_template = chat_template
        self.add_bos_token = add_bos_token
        self.model_max_length = model_max_length

    @property
    def backend(self) -> Tokenizer:
        """The wrapped `tokenizers.Tokenizer`."""
        return self._tokenizer

    # -- encoding and decoding ------------------------------------------------

    def encode(self, text: str, add_bos: bool = False, literal_special_tokens: bool = False) -> list[int]:
        """Token ids of `text`; special-token strings in the text become their single ids, or, with
        `literal_special_tokens`, are encoded as the plain text they are (for untrusted text: a prompt from a
        client, a repository's files)."""
        ids = self.encoding_backend(literal_special_tokens).encode(text, add_special_tokens=False).ids
        return self._with_bos(ids) if add_bos else ids

    def encoding_backend(self, literal_special_tokens: bool = False) -> Tokenizer:
        """The `tokenizers.Tokenizer` that encodes: the wrapped one, or (`literal_special_tokens`) a copy of it that
        encodes special-token strings as plain text (made once)."""
        if not literal_special_tokens:
            return self._tokenizer
        if self._literal_tokenizer is None:
            literal = Tokenizer.from_str(self._tokenizer.to_str())
            literal.encode_special_tokens = True
            self._literal_tokenizer = literal
        return self._literal_tokenizer

    def encode_batch(self, texts: Sequence[str], add_bos: bool = False) -> list[list[int]]:
        """`encode` for many texts at once (parallel inside `tokenizers` unless TOKENIZERS_PARALLELISM=false)."""
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        return [self._with_bos(e.ids) if add_bos else e.ids for e in encodings]

    def _with_bos(self, ids: list[int]) -> list[int]:
        if self.bos_id is None:
            raise RepolmError("add_bos=True but this tokenizer has no bos token (tokenizer_config.json: bos_token)")
        return [self.bos_id, *ids]

    def decode(self, ids: Iterable[int], skip_special_tokens: bool = False) -> str:
        """Text of `ids`; exact inverse of `encode` (no space clean-up, no prefix space)."""
        return self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        """Id of a vocabulary entry (in byte-level form, e.g. "Ġreturn") or of an added token; None if absent."""
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Vocabulary entry of an id (byte-level form for BPE tokens); None if the id is not used."""
        return self._tokenizer.id_to_token(token_id)

    # -- vocabulary -----------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of real ids, added tokens included (highest id + 1): 32022 for DeepSeek-Coder."""
        vocab = self._tokenizer.get_vocab(with_added_tokens=True)
        return max(vocab.values()) + 1 if vocab else 0

    def __len__(self) -> int:
        return self.vocab_size

    def _configured_or_default_id(self, configured: str | None, default: str) -> int | None:
        for token in (configured, default):
            if token is not None and (token_id := self.token_to_id(token)) is not None:
                return token_id
        return None

    @property
    def bos_id(self) -> int | None:
        """Id of the configured bos token, else of `<｜begin▁of▁sentence｜>`; None if neither exists."""
        return self._configured_or_default_id(self.bos_token, BOS_TOKEN)

    @property
    def eos_id(self) -> int | None:
        """Id of `<｜end▁of▁sentence｜>` (end of a document), else of the configured eos token."""
        return self._configured_or_default_id(EOS_TOKEN, self.eos_token or EOS_TOKEN)

    @property
    def eot_id(self) -> int | None:
        """Id of `<|EOT|>` (end of an instruct turn), None if absent."""
        return self.token_to_id(EOT_TOKEN)

    @property
    def pad_id(self) -> int | None:
        """Id of the configured pad token, else of `<pad>`; None if neither exists."""
        return self._configured_or_default_id(self.pad_token, PAD_TOKEN)

    @property
    def fim_begin_id(self) -> int | None:
        """Id of `<｜fim▁begin｜>` (before the prefix), None if absent."""
        return self.token_to_id(FIM_BEGIN_TOKEN)

    @property
    def fim_hole_id(self) -> int | None:
        """Id of `<｜fim▁hole｜>` (between prefix and suffix), None if absent."""
        return self.token_to_id(FIM_HOLE_TOKEN)

    @property
    def fim_end_id(self) -> int | None:
        """Id of `<｜fim▁end｜>` (after the suffix; the middle follows), None if absent."""
        return self.token_to_id(FIM_END_TOKEN)

    # -- chat -----------------------------------------------------------------

    def apply_chat_template(
        self, messages: list[dict[str, Any]], add_generation_prompt: bool = True, template: str | None = None
    ) -> str:
        """Render `messages` ({"role", "content"} dicts) with this tokenizer's chat template, as transformers does;
        `template`: a Jinja chat template to render instead of the tokenizer's own.

        The template sees `messages`, `add_generation_prompt`, `bos_token`, `eos_token`, `pad_token` and the
        functions `raise_exception` and `strftime_now`.
        """
        template = self.chat_template if template is None else template
        if template is None:
            raise RepolmError("this tokenizer has no chat template (tokenizer_config.json: chat_template)")
        if not messages:
            raise RepolmError("cannot apply the chat template to an empty list of messages")
        special_tokens = {"bos_token": self.bos_token, "eos_token": self.eos_token, "pad_token": self.pad_token}
        try:
            return _compile_chat_template(template).render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                **{name: token for name, token in special_tokens.items() if token is not None},
            )
        except jinja2.exceptions.TemplateSyntaxError as error:
            raise RepolmError(f"chat template is not valid Jinja: {one_line(error)}") from error
        except jinja2.exceptions.TemplateError as error:
            raise RepolmError(f"chat template rejected the messages: {one_line(error)}") from error

    # -- HF folders -----------------------------------------------------------

    def save(self, directory: Path | str) -> Path:
        """Write an HF tokenizer folder: tokenizer.json, tokenizer_config.json, special_tokens_map.json (and
        chat_template.jinja, the same template as in the config, when there is one).

        Through `repolm.folder_writer.write_folder`: a new folder appears complete or not at all; into an existing
        folder (e.g. one that already holds model weights) each file is replaced atomically, other files are kept.
        """
        directory = Path(directory)
        if directory.exists() and not directory.is_dir():
            raise RepolmError(f"cannot save tokenizer: {directory} exists and is not a folder")
        # chat_template.jinja is "owned": saved without a template, a stale one is removed (transformers would use it)
        write_folder(directory, self._write_files, owned=lambda name: name == CHAT_TEMPLATE_FILE)
        logger.info("saved tokenizer (%d ids) to %s", self.vocab_size, directory)
        return directory

    def _write_files(self, directory: Path) -> None:
        self._tokenizer.save(str(directory / TOKENIZER_FILE))
        special_tokens_map = {
            name: token
            for name, token in (
                ("bos_token", self.bos_token),
                ("eos_token", self.eos_token),
                ("pad_token", self.pad_token),
            )
            if token is not None
        }
        config: dict[str, Any] = {
            "tokenizer_class": HF_TOKENIZER_CLASS,
            **special_tokens_map,
            "add_bos_token": self.add_bos_token,
            "add_eos_token": False,
            "clean_up_tokenization_spaces": False,
            "model_max_length": self.model_max_length,
        }
        if self.chat_template is not None:
            config["chat_template"] = self.chat_template
            # transformers >= 4.50 reads chat_template.jinja first; writing it too keeps a stale one from winning.
            (directory / CHAT_TEMPLATE_FILE).write_text(self.chat_template, encoding="utf-8")
        for name, content in ((TOKENIZER_CONFIG_FILE, config), (SPECIAL_TOKENS_MAP_FILE, special_tokens_map)):
            (directory / name).write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, directory: Path | str) -> CodeTokenizer:
        """Read an HF tokenizer folder that has tokenizer.json; the other files are optional.

        bos/eos/pad tokens come from tokenizer_config.json (else special_tokens_map.json), the chat template from
        chat_template.jinja (else tokenizer_config.json), `add_bos_token` from the config (else: whether the
        post-processor inserts the bos token).
        """
        directory = Path(directory)
        if not directory.exists():
            raise RepolmError(f"tokenizer folder not found: {directory}")
        if not directory.is_dir():
            raise RepolmError(f"not a tokenizer folder (expected a directory with tokenizer.json): {directory}")
        tokenizer_path = directory / TOKENIZER_FILE
        if not tokenizer_path.is_file():
            raise RepolmError(f"{tokenizer_path} not found: a tokenizer folder needs tokenizer.json")
        tokenizer_json = _read_json(tokenizer_path)
        if not isinstance(tokenizer_json, dict) or "model" not in tokenizer_json:
            raise RepolmError(f"{tokenizer_path}: not a tokenizer.json (no 'model' field)")
        try:
            tokenizer = Tokenizer.from_str(json.dumps(tokenizer_json))
        except Exception as error:  # tokenizers raises plain Exception for malformed pipelines
            raise RepolmError(f"{tokenizer_path}: cannot be loaded by tokenizers ({one_line(error)})") from error

        config = _read_optional_json_object(directory / TOKENIZER_CONFIG_FILE)
        special_tokens_map = _read_optional_json_object(directory / SPECIAL_TOKENS_MAP_FILE)

        def configured_token(name: str) -> str | None:
            return _token_content(config.get(name)) or _token_content(special_tokens_map.get(name))

        chat_template_path = directory / CHAT_TEMPLATE_FILE
        if chat_template_path.is_file():
            chat_template = _read_text(chat_template_path)
        else:
            chat_template = _chat_template_from_config(config.get("chat_template"))

        bos_token = configured_token("bos_token")
        add_bos_token = config.get("add_bos_token")
        if not isinstance(add_bos_token, bool):
            add_bos_token = _post_processor_adds(tokenizer_json, bos_token)
        model_max_length = config.get("model_max_length", DEFAULT_MODEL_MAX_LENGTH)
        if not isinstance(model_max_length, int | float):
            raise RepolmError(
                f"{directory / TOKENIZER_CONFIG_FILE}: model_max_length must be a number, got {model_max_length!r}"
            )

        loaded = cls(
            tokenizer,
            bos_token=bos_token,
            eos_token=configured_token("eos_token"),
            pad_token=configured_token("pad_token"),
            chat_template=chat_template,
            add_bos_token=add_bos_token,
            model_max_length=int(model_max_length),
        )
        logger.info("loaded tokenizer (%d ids) from %s", loaded.vocab_size, directory)
        return loaded

    def __repr__(self) -> str:
        return (
            f"CodeTokenizer(vocab_size={self.vocab_size}, bos={self.bos_token!r}, eos={self.eos_token!r}, "
            f"pad={self.pad_token!r}, chat_template={'yes' if self.chat_template else 'no'})"
        )
