"""The dedup jobs' reader of a document folder: datatrove's JsonlReader over ``<route>/*.jsonl.gz`` (task r reads files
r, r + tasks, ... of the sorted listing, in order), tagging each document with the input file it came from."""

from __future__ import annotations

from datatrove.pipeline.readers import JsonlReader

from moss_data.io.documents import SHARD_PATTERN

FILE_KEY = "_dedup_input_file"  # metadata the dedup steps pop: the document's input file, relative to the folder


class ShardReader(JsonlReader):
    name = "🗂 dedup shards"

    def __init__(self, data_folder: str):
        super().__init__(data_folder, glob_pattern=SHARD_PATTERN, add_file_path=False)

    def read_file(self, filepath: str):
        for document in super().read_file(filepath):
            document.metadata[FILE_KEY] = filepath
            yield document
