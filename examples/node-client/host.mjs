// Stand-in for the host application's own auth system: in a real app these functions call your
// sign-in SDK or token service. Here they return tokens from environment variables, or unsigned
// demo JWTs, so the example runs anywhere.

function demoJwt(claims) {
  const encode = (value) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode({ alg: "none", typ: "JWT" })}.${encode(claims)}.${Buffer.from("signature").toString("base64url")}`;
}

function demoIdToken(email, workspace) {
  return demoJwt({
    email,
    "https://api.openai.com/auth": { chatgpt_plan_type: "pro", chatgpt_account_id: workspace },
  });
}

/** The tokens the user signed in with. */
export function currentTokens() {
  return {
    idToken: process.env.HOST_ID_TOKEN ?? demoIdToken("demo@example.com", "org-demo"),
    accessToken: process.env.HOST_ACCESS_TOKEN ?? "demo-access-token",
  };
}

/** Called when authbridge got a 401 with the current tokens: return fresh ones. */
export async function refreshTokens({ previousAccountId }) {
  if (process.env.HOST_REFUSE_REFRESH) {
    throw { code: -32000, message: "the user signed out of the host app" };
  }
  return {
    idToken: process.env.HOST_REFRESHED_ID_TOKEN ?? demoIdToken("demo@example.com", previousAccountId ?? "org-demo"),
    accessToken: process.env.HOST_REFRESHED_ACCESS_TOKEN ?? "demo-refreshed-access-token",
  };
}
