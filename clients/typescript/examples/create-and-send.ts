/**
 * What WedSync does when a supplier connects a system: create the integration, route
 * notifications to it, and send one. Type-checked in CI against the generated types, so a
 * change to Herald's API that breaks this code fails CI.
 */
import { createHeraldClient, type WeddingNotification } from "../src/index";

export async function connectAndNotify(baseUrl: string, apiKey: string): Promise<string> {
  const herald = createHeraldClient(baseUrl, apiKey);

  const created = await herald.POST("/v1/integrations", {
    params: { query: { verify: false } },
    body: {
      integrationId: "studio-webhook",
      system: "webhook",
      settings: {
        url: "https://hooks.example-studio.com/wedsync",
        signing_secret: { value: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" },
      },
      retry: { maxAttempts: 5 },
    },
  });
  if (created.error) {
    throw new Error(`integration refused: ${created.error.error.message}`);
  }
  const integration = created.data;

  const route = await herald.POST("/v1/routes", {
    body: {
      name: "timeline changes",
      types: ["timeline_change"],
      minPriority: "normal",
      when: "wedding.guestCount > 50",
      targets: [integration.integrationId],
    },
  });
  if (route.error) {
    throw new Error(`route refused: ${route.error.error.field ?? ""} ${route.error.error.message}`);
  }

  const notification: WeddingNotification = {
    notificationId: "n-2027-06-12-timeline",
    type: "timeline_change",
    priority: "high",
    title: "Ceremony moved to 15:30",
    message: "The ceremony starts 30 minutes later; the photographer's arrival moves with it.",
    weddingContext: {
      weddingId: "w-2027-06-12",
      weddingDate: "2027-06-12",
      venue: "Hedingham Castle",
      guestCount: 120,
      timezone: "Europe/London",
    },
  };
  const sent = await herald.POST("/v1/notifications", { body: notification });
  if (sent.error) {
    throw new Error(`notification refused: ${sent.error.error.message}`);
  }
  const routed = await herald.GET("/v1/notifications/{notificationId}", {
    params: { path: { notificationId: sent.data.notificationId } },
  });
  if (routed.error) {
    throw new Error(routed.error.error.message);
  }
  return routed.data.targets.map((target) => `${target.integrationId}: ${target.state}`).join("\n");
}
