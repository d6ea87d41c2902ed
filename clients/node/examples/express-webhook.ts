import express from "express";
import { verifyWebhook, WebhookVerificationError, type LegacyCallback } from "@whisper-batch/client/webhooks";

export interface Transcriptions {
  completed(transcriptionId: string, s3ResultUrl: string, durationSeconds: number): Promise<void> | void;
  failed(transcriptionId: string, error: string): Promise<void> | void;
}

/**
 * Adds POST /hooks/stt to `app` (a new one by default). The signature covers the exact bytes sent, so the route
 * takes its body raw; in an app that already parses JSON for every route, build it with
 * `express.json({ verify: keepRawBody })` and the bytes are kept as `req.rawBody`.
 */
export function webhookApp(
  secret: string | undefined,
  transcriptions: Transcriptions,
  app: express.Express = express(),
): express.Express {
  app.post("/hooks/stt", express.raw({ type: "application/json" }), async (req, res) => {
    let event: LegacyCallback;
    try {
      const body = (req as { rawBody?: Buffer }).rawBody ?? req.body;
      event = verifyWebhook<LegacyCallback>(body, req.headers, secret ?? "");
    } catch (error) {
      if (error instanceof WebhookVerificationError) {
        res.sendStatus(400); // forged, altered or replayed: the worker does not retry a 4xx
        return;
      }
      // No secret, or the body was parsed before this route: fix the receiver. A 5xx makes the worker retry,
      // so the callback is not lost meanwhile.
      console.error("whisper-batch callback not verified:", (error as Error).message);
      res.sendStatus(500);
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
