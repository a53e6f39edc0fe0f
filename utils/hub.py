"""Files on the Hugging Face hub: the published datasets' CSV files and `hf://` references to checkpoints.

    hf://sapientinc/HRM-checkpoint-sudoku-extreme/checkpoint    a file of a model repository (any path inside it)
    hf://datasets/OWNER/REPO/train.csv                          a file of a dataset repository

Every checkpoint path the trainer accepts (pretrain.py load_checkpoint=, evaluate.py checkpoint=, the solve CLI)
goes through `resolve`, which downloads a reference, and the files asked for beside it (its all_config.yaml), into
the hub's local cache and returns the local path; a local path comes back unchanged. The dataset builders use
`download`. huggingface_hub does the work, so its settings apply: HF_ENDPOINT (a mirror), HF_HOME / HF_HUB_CACHE
(the cache), HF_HUB_OFFLINE=1 (the cache only), HF_TOKEN (private repositories), HF_HUB_ETAG_TIMEOUT and
HF_HUB_DOWNLOAD_TIMEOUT (seconds), HF_HUB_DISABLE_PROGRESS_BARS. Every failure is a HubError: one line that names
the file and the reason.
"""
import dataclasses
import os
import posixpath
from typing import Sequence

from utils.errors import UserError

HUB_SCHEME = "hf://"
DATASETS_PREFIX = "datasets/"  # huggingface_hub's own spelling of dataset repositories in hf:// paths
EXAMPLE_REFERENCE = "hf://sapientinc/HRM-checkpoint-sudoku-extreme/checkpoint"
# Outputs "beside" a hub checkpoint go under this folder of the current directory, never into the hub cache: the
# cache may be shared or read-only, and cache tools delete snapshots with everything in them.
HUB_OUTPUTS_DIR = os.path.join("checkpoints", "hub")


class HubError(UserError, RuntimeError):
    """A hub file that cannot be had: a malformed reference, no such repository or file, or the hub unreachable
    (or HF_HUB_OFFLINE set) while the file is not in the local cache."""


@dataclasses.dataclass(frozen=True)
class HubFile:
    repo_id: str    # OWNER/REPO
    filename: str   # path inside the repository, "/"-separated
    repo_type: str = "model"

    def beside(self, name: str) -> "HubFile":
        """The file `name` in the same repository folder."""
        return HubFile(self.repo_id, posixpath.join(posixpath.dirname(self.filename), name), self.repo_type)

    def __str__(self) -> str:
        prefix = DATASETS_PREFIX if self.repo_type == "dataset" else ""
        return f"{HUB_SCHEME}{prefix}{self.repo_id}/{self.filename}"


def is_hub_reference(path: str) -> bool:
    return str(path).startswith(HUB_SCHEME)


def parse_reference(reference: str) -> HubFile:
    """hf://[datasets/]OWNER/REPO/PATH -> HubFile; HubError when a part is missing (e.g. no file name)."""
    rest = reference[len(HUB_SCHEME):]
    repo_type = "dataset" if rest.startswith(DATASETS_PREFIX) else "model"
    parts = rest.removeprefix(DATASETS_PREFIX).split("/")
    if len(parts) < 3 or not all(parts) or any(part in (".", "..") for part in parts):
        raise HubError(f"{reference} is not a hub file reference: expected hf://OWNER/REPO/FILE (the repository "
                       f"and the file in it), e.g. {EXAMPLE_REFERENCE}")
    return HubFile("/".join(parts[:2]), "/".join(parts[2:]), repo_type)


def resolve(path: str, beside: Sequence[str] = ()) -> str:
    """The local path of a checkpoint file: `path` itself, or for an hf:// reference its copy in the hub cache,
    downloaded together with the files named in `beside` from the same repository folder, so that they lie
    beside it in the cache as they do in the repository."""
    if not is_hub_reference(path):
        return path
    file = parse_reference(path)
    local = download(file)
    for name in beside:
        download(file.beside(name))
    return local


def output_prefix(path: str) -> str:
    """Where files saved "beside" a checkpoint go: beside it for a local file; for an hf:// reference, the same
    repository path under checkpoints/hub/ of the current directory (see HUB_OUTPUTS_DIR)."""
    if not is_hub_reference(path):
        return os.path.abspath(path)
    file = parse_reference(path)
    return os.path.abspath(os.path.join(HUB_OUTPUTS_DIR, file.repo_id, *file.filename.split("/")))


def download(file: HubFile) -> str:
    """Download `file` into the hub cache, or find it there, and return its local path (hf_hub_download's progress
    bar shows a download)."""
    try:
        import huggingface_hub
    except ImportError:
        raise HubError(f"cannot get {file}: huggingface_hub is not installed (pip install -r requirements.txt)"
                       ) from None
    import httpx2  # huggingface_hub's HTTP client: its errors are the network's
    from huggingface_hub import constants, errors
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(file.repo_id)
    except errors.HFValidationError as err:
        raise HubError(f"cannot get {file}: {_first_line(err)}") from None
    if constants.is_offline_mode():
        return _from_cache(file, "HF_HUB_OFFLINE is set")
    # One metadata request without retries first: when the hub is unreachable, hf_hub_download would retry for
    # minutes (a 60 s time-out, five times) before giving up; this fails within HF_HUB_ETAG_TIMEOUT.
    url = huggingface_hub.hf_hub_url(file.repo_id, file.filename, repo_type=file.repo_type)
    try:
        huggingface_hub.get_hf_file_metadata(url, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except errors.RemoteEntryNotFoundError:
        raise HubError(f"cannot get {file}: no file {file.filename} in the {file.repo_type} repository "
                       f"{file.repo_id} at {constants.ENDPOINT}") from None
    except (errors.HfHubHTTPError, httpx2.TransportError) as err:
        # Hub down or unreachable, or the repository missing, private or gated: a copy already in the cache still
        # serves, as it does for huggingface_hub itself.
        return _from_cache(file, _reason(file, err))
    try:
        return huggingface_hub.hf_hub_download(file.repo_id, file.filename, repo_type=file.repo_type)
    except (errors.HfHubHTTPError, errors.EntryNotFoundError, httpx2.TransportError) as err:
        raise HubError(f"cannot get {file}: {_reason(file, err)}") from None


def _from_cache(file: HubFile, why: str) -> str:
    import huggingface_hub
    from huggingface_hub import constants, errors

    try:
        return huggingface_hub.hf_hub_download(file.repo_id, file.filename, repo_type=file.repo_type,
                                               local_files_only=True)
    except errors.LocalEntryNotFoundError:
        raise HubError(f"cannot get {file}: {why}, and it is not in the hub cache {constants.HF_HUB_CACHE}"
                       ) from None


def _reason(file: HubFile, err: Exception) -> str:
    """What went wrong, in a few words that say what to do."""
    import httpx2
    from huggingface_hub import constants, errors

    endpoint = constants.ENDPOINT
    if isinstance(err, errors.GatedRepoError):
        return (f"the {file.repo_type} repository {file.repo_id} at {endpoint} is gated: accept its terms on the "
                f"hub, then log in (hf auth login) or set HF_TOKEN")
    if isinstance(err, errors.RepositoryNotFoundError):
        return (f"no {file.repo_type} repository {file.repo_id} at {endpoint} (if it is private, log in with "
                f"hf auth login or set HF_TOKEN)")
    if isinstance(err, httpx2.TimeoutException):
        return (f"{endpoint} did not answer in time (HF_HUB_ETAG_TIMEOUT={constants.HF_HUB_ETAG_TIMEOUT} s, "
                f"HF_HUB_DOWNLOAD_TIMEOUT={constants.HF_HUB_DOWNLOAD_TIMEOUT} s)")
    if isinstance(err, httpx2.TransportError):
        return f"cannot reach {endpoint} ({type(err).__name__}: {_first_line(err)})"
    return _first_line(err)  # an HTTP error's first line holds its status and URL


def _first_line(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
