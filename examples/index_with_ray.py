"""Index a folder into a Chroma server with Ray: one encoder actor per worker, then query it as usual.

    chroma run --path chroma-data --port 8000          # the collection every worker writes into
    python examples/index_with_ray.py --server http://localhost:8000 --workers 2
    python examples/index_with_ray.py --server http://localhost:8000 --address auto --workers 8 --gpus-per-worker 1

Without --address, Ray joins the cluster this process belongs to or starts one on this machine. Re-run the
same command after a failure (a worker that died): what was written is kept and the rest is finished.
Needs `pip install 'llara-rag[ray]'`.
"""

import argparse
from pathlib import Path

from llara_rag.encoding.embedding import LLaRAEmbedding
from llara_rag.indexing.distributed import RayConfig, index_with_ray
from llara_rag.indexing.store import StoreConfig
from llara_rag.retrieval.retriever import RetrievalConfig, open_retriever, search

parser = argparse.ArgumentParser()
parser.add_argument("--server", required=True, help="the Chroma server's URL, e.g. http://localhost:8000")
parser.add_argument("--collection", default="handbook-ray")
parser.add_argument("--docs", default=str(Path(__file__).resolve().parent / "sample_docs"))
parser.add_argument("--model", default="smollm2", help="the embedding backbone")
parser.add_argument("--workers", type=int, default=2, help="encoder actors, each with its own model copy")
parser.add_argument("--gpus-per-worker", type=float, default=0, help="0: the actors run on CPUs")
parser.add_argument("--address", default=None, help="a Ray cluster to join: auto, ray://head:10001, ...")
parser.add_argument("--question", default="Can I deploy to production on a Friday?")
args = parser.parse_args()

store = StoreConfig.from_url(args.server, collection=args.collection)
embed_model = LLaRAEmbedding(args.model)
cluster = RayConfig(workers=args.workers, gpus_per_worker=args.gpus_per_worker, address=args.address)
print(index_with_ray(args.docs, store, embed_model, ray_config=cluster).report())

retriever = open_retriever(store, embed_model, RetrievalConfig(mode="hybrid", top_k=3))
for hit in search(retriever, args.question):
    print(f"{hit.score:.3f}  {hit.file_name}  ({' + '.join(hit.found_by)})")
