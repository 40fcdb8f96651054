/**
 * Typed documents of cosell mapping steps.
 *
 * Generated from schema/referral.schema.json and schema/opportunity.schema.json by cosell
 * (host/src/schema_types.rs). Do not edit: change the schemas and regenerate with
 * `COSELL_UPDATE_TYPES=1 cargo test -p cosell --test schemas`.
 */

/**
 * A Partner Center co-sell referral as a mapping step sees it: the input of a
 * partner-center-to-crm pipeline and the output of a crm-to-partner-center one. The fields the
 * default mapping reads and writes are described here; any other field (e.g. `links`, `target`,
 * `tags`, `trackingInfo`) is allowed and kept.
 */
export interface Referral {
  /** The customer's consent flags. */
  consent?: Consent | null;
  /** When the referral was created (RFC 3339). */
  createdDateTime?: string | null;
  /** The end customer: company, address and contacts. */
  customerProfile?: CustomerProfile | null;
  /** Deal value, currency, closing date, notes and requirements. */
  details?: Details | null;
  /** `Incoming` or `Outgoing`. */
  direction?: string | null;
  /** The referral's ETag (for conditional updates). */
  eTag?: string | null;
  /** The engagement that groups this referral with its related referrals. */
  engagementId?: string | null;
  /** When a pending referral expires (RFC 3339). */
  expirationDateTime?: string | null;
  /** The id of the linked CRM record (the opportunity id), or null. */
  externalReferenceId?: string | null;
  /** The referral's id (a GUID). */
  id?: string | null;
  /** Why the referral was shared and what help is asked of Microsoft. */
  inviteContext?: InviteContext | null;
  /** The referral's name (the opportunity's topic). */
  name?: string | null;
  /** The partner organisation that owns the referral. */
  organizationId?: string | null;
  /** The partner organisation's name. */
  organizationName?: string | null;
  /** `SalesQualified`, `MarketingQualified`, ... */
  qualification?: string | null;
  /** The sales stage, e.g. `Qualify`. */
  salesStage?: string | null;
  /** `New`, `Active` or `Closed`. */
  status?: string | null;
  /** `Pending`, `Received`, `Accepted`, `Engaged`, `Declined`, `Won`, `Lost` or `Expired`. */
  substatus?: string | null;
  /** The partner's own team on the referral. */
  team?: Member[] | null;
  /** `Independent` or `Shared`. */
  type?: string | null;
  /** When the referral was last updated (RFC 3339). */
  updatedDateTime?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * A postal address. Other fields (e.g. `region`) are allowed and kept.
 */
export interface Address {
  /** First street line. */
  addressLine1?: string | null;
  /** Second street line. */
  addressLine2?: string | null;
  /** City. */
  city?: string | null;
  /** ISO 3166-1 alpha-2 country code, e.g. `NL` (the default mapping upper-cases it). */
  country?: string | null;
  /** Postal code. */
  postalCode?: string | null;
  /** State or province. */
  state?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * The customer's consent flags.
 */
export interface Consent {
  /** Consent to be contacted. */
  consentToContact?: boolean | null;
  /** Consent to share the referral with Microsoft sellers. */
  consentToShareReferralWithMicrosoftSellers?: boolean | null;
  /** Consent to share the customer's information with others (Partner Center's spelling). */
  consentToToShareInfoWithOthers?: boolean | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * The end customer of a referral. Other fields (e.g. `ids`, `isMatchingComplete`) are allowed
 * and kept.
 */
export interface CustomerProfile {
  /** The customer's address. */
  address?: Address | null;
  /** The customer's company name. */
  name?: string | null;
  /** The company size, e.g. `251to1000employees`. */
  size?: string | null;
  /** The customer's contacts. */
  team?: Member[] | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * Deal details of a referral.
 */
export interface Details {
  /** Expected closing date (RFC 3339). */
  closingDateTime?: string | null;
  /** ISO 4217 currency code, e.g. `EUR`. */
  currency?: string | null;
  /** Whether the customer asked to be contacted. */
  customerRequestedContact?: boolean | null;
  /** The deal value: a number, though some senders write it as a string. */
  dealValue?: number | string | null;
  /** Free-text notes. */
  notes?: string | null;
  /** Industries, products, services and solutions. */
  requirements?: Requirements | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * Why a referral was shared. Other fields (e.g. `invitedMpnId`, `invitedBy`) are allowed and
 * kept.
 */
export interface InviteContext {
  /** "How can Microsoft help?", e.g. `CustomerTechnicalArchitecture`. */
  assistanceRequestCode?: string | null;
  /** Notes from whoever shared the referral. */
  notes?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * A person on a referral: a customer contact or a partner team member. Other fields (e.g.
 * `contactPreference`) are allowed and kept.
 */
export interface Member {
  /** E-mail address. */
  email?: string | null;
  /** First name. */
  firstName?: string | null;
  /** Last name. */
  lastName?: string | null;
  /** Phone number. */
  phoneNumber?: string | null;
  /** Job title (customer contacts). */
  title?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * What the customer needs. Other fields (e.g. `industries`, `products`, `services`) are allowed
 * and kept.
 */
export interface Requirements {
  /** The solutions (the default mapping writes their ids to the products column). */
  solutions?: Solution[] | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * A solution on a referral. Other fields (e.g. `publisherName`, `solutionType`) are allowed and
 * kept.
 */
export interface Solution {
  /** The solution id, e.g. `SOL-6115380-IPC`. */
  id?: string | null;
  /** The solution's display name. */
  name?: string | null;
  /** `Name` or `Category`. */
  type?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * A Dataverse `opportunity` row as the Web API returns it (with `$expand` of the customer
 * account, its contacts, the primary contact and the currency) or takes it: the output of a
 * partner-center-to-crm pipeline and the input of a crm-to-partner-center one. cosell's own
 * columns are shown with the default prefix `cosell_` (the prefix is configurable); any other
 * column (custom columns such as `contoso_territory`, lookups such as `_ownerid_value`, OData
 * annotations such as `@odata.etag`) is allowed and kept.
 */
export interface Opportunity {
  /** The probability of winning, 0 to 100 (a percentage). Not written by the default mapping; a step of yours may set it. */
  closeprobability?: number | null;
  /** The audit trail: one line per change cosell made. */
  cosell_audit?: string | null;
  /** "How can Microsoft help?" (an option-set value; see the mapping's `help-option.*` config keys). */
  cosell_howcanmicrosofthelp?: number | null;
  /** The referral's solution ids, comma-separated. */
  cosell_products?: string | null;
  /** The linked referral's id. */
  cosell_referralidentifier?: string | null;
  /** A link to the referral in Partner Center. */
  cosell_referrallink?: string | null;
  /** Sync with Partner Center: only rows with Yes become referrals. */
  cosell_syncwithpartnercenter?: boolean | null;
  /** The customer account (expanded `customerid_account`) with its contacts. */
  customerid_account?: Account | null;
  /** The description. */
  description?: string | null;
  /** The estimated close date (`YYYY-MM-DD`). */
  estimatedclosedate?: string | null;
  /** The estimated revenue: a number, though some senders write it as a string. */
  estimatedvalue?: number | string | null;
  /** The topic. */
  name?: string | null;
  /** The row's id (a GUID). */
  opportunityid?: string | null;
  /** The primary contact (expanded `parentcontactid`). */
  parentcontactid?: Contact | null;
  /** Status: 0 open, 1 won, 2 lost. */
  statecode?: number | null;
  /** Status reason (an option-set value; the customisable ones are mapping config keys). */
  statuscode?: number | null;
  /** The sales stage's name (up to 200 characters). Not written by the default mapping; a step of yours may set it. */
  stepname?: string | null;
  /** The currency (expanded `transactioncurrencyid`). */
  transactioncurrencyid?: Currency | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * The customer account. Other columns are allowed and kept.
 */
export interface Account {
  /** The account row's id. */
  accountid?: string | null;
  /** City. */
  address1_city?: string | null;
  /** Country (the default mapping writes ISO 3166-1 alpha-2 codes). */
  address1_country?: string | null;
  /** First street line. */
  address1_line1?: string | null;
  /** Second street line. */
  address1_line2?: string | null;
  /** Postal code. */
  address1_postalcode?: string | null;
  /** State or province. */
  address1_stateorprovince?: string | null;
  /** The account's contacts (expanded `contact_customer_accounts`). */
  contact_customer_accounts?: Contact[] | null;
  /** The company name. */
  name?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * A Dataverse contact. Other columns are allowed and kept.
 */
export interface Contact {
  /** The contact row's id. */
  contactid?: string | null;
  /** E-mail address. */
  emailaddress1?: string | null;
  /** First name. */
  firstname?: string | null;
  /** Job title. */
  jobtitle?: string | null;
  /** Last name. */
  lastname?: string | null;
  /** Phone number. */
  telephone1?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}

/**
 * The opportunity's currency. Other columns are allowed and kept.
 */
export interface Currency {
  /** ISO 4217 code, e.g. `EUR`. */
  isocurrencycode?: string | null;
  /** The currency row's id. */
  transactioncurrencyid?: string | null;
  /** Fields this type does not list (custom columns, annotations, ...). */
  [field: string]: unknown;
}
