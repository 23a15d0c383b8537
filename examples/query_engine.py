"""The smallest RAG program: LLaRA embeddings and a local generator behind a LlamaIndex query engine.

python examples/query_engine.py "Can I deploy to production on a Friday?"
"""

import argparse
from pathlib import Path

from llama_index.core import Settings, SimpleDirectoryReader, VectorStoreIndex

from llara_rag.chat.generator import GeneratorConfig, LocalGenerator
from llara_rag.encoding.embedding import LLaRAEmbedding

parser = argparse.ArgumentParser()
parser.add_argument("question", nargs="?", default="Can I deploy to production on a Friday?")
parser.add_argument("--docs", default=str(Path(__file__).resolve().parent / "sample_docs"))
parser.add_argument("--model", default="smollm2", help="the embedding backbone")
parser.add_argument("--generator", default="smollm2", help="the chat model that writes the answer")
parser.add_argument("--max-new-tokens", type=int, default=200)
args = parser.parse_args()

Settings.embed_model = LLaRAEmbedding(args.model)
Settings.llm = LocalGenerator(GeneratorConfig(model=args.generator, max_new_tokens=args.max_new_tokens))
Settings.chunk_size = 256  # LLaRA reads at most 512 tokens of a passage

index = VectorStoreIndex.from_documents(SimpleDirectoryReader(args.docs).load_data())
response = index.as_query_engine(similarity_top_k=3).query(args.question)
print(response)
for source in response.source_nodes:
    print(f"  - {source.node.metadata['file_name']}")
