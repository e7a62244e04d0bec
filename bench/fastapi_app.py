"""The original replica server, as users ran it: FastAPI on uvicorn.

Kept here as the benchmark's baseline: `uvicorn fastapi_app:app --port 5000`.
"""

import os

from fastapi import FastAPI, Response

app = FastAPI()


@app.get("/home")
def home():
    return {"message": f"Hello from Server: {os.environ['SERVER_ID']}", "status": "successful"}


@app.get("/heartbeat")
def heartbeat():
    return Response(status_code=200)
