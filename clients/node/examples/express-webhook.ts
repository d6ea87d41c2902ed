import express from "express";
import { verifyWebhook, type LegacyCallback } from "@whisper-batch/client";

export interface Transcriptions {
  completed(transcriptionId: string, s3ResultUrl: string, durationSeconds: number): Promise<void> | void;
  failed(transcriptionId: string, error: string): Promise<void> | void;
}

export function webhookApp(secret: string, transcriptions: Transcriptions): express.Express {
  const app = express();
  // The signature covers the exact bytes sent: take the body raw, never parsed by express.json().
  app.post("/hooks/stt", express.raw({ type: "application/json" }), async (req, res) => {
    let event: LegacyCallback;
    try {
      event = verifyWebhook<LegacyCallback>(req.body, req.headers, secret);
    } catch {
      res.sendStatus(401); // forged, altered or replayed
      return;
    }
    if (event.status === "COMPLETED") {
      await transcriptions.completed(event.transcriptionId, event.s3ResultUrl ?? "", event.durationSeconds ?? 0);
    } else {
      await transcriptions.failed(event.transcriptionId, event.error ?? "unknown error");
    }
    res.sendStatus(204); // any 2xx ends the worker's retries
  });
  return app;
}
